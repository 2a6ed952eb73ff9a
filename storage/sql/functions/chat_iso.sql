-- chat_iso: ISO 8601 UTC with milliseconds, as clients get createdAt (the
-- HTTP API's reads use it; chat_ingest writes the same format out).
CREATE OR REPLACE FUNCTION chat_iso(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;
