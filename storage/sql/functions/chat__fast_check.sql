-- chat__fast_check: the last step of the owner's batch statement
-- (storage/ingest/fast.c): raises chat_fast_stale unless every guard held,
-- which rolls back everything the statement wrote. ok is computed by the
-- statement from the rows its writes touched.
CREATE OR REPLACE FUNCTION chat__fast_check(ok boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'chat_fast_stale: the room cache is out of date';
    END IF;
    RETURN true;
END
$$;
