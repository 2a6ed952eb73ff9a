-- chat_aggregate: the lowest status of message seq of sender in room over
-- the other members: 'seen', 'delivered' or 'sent' ('sent' too when nobody
-- else is a member). Nothing in chat-storage calls it since 0005
-- (chat__events computes the aggregate inline); it stays for ad-hoc use.
CREATE OR REPLACE FUNCTION chat_aggregate(room text, sender text, seq bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(*) = 0 THEN 'sent'
                WHEN min(m.seen_seq) >= seq THEN 'seen'
                WHEN min(m.delivered_seq) >= seq THEN 'delivered'
                ELSE 'sent' END
      FROM room_members m
     WHERE m.room_id = room AND m.user_id <> sender
$$;
