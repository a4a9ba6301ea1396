-- The soak's table (bench/soak.py): a long-lived outbound_message, mostly history, and a queue.

-- name: soak_history
-- $1 messages already SENT over the last 30 days, each with its attempt row, as production keeps
-- them (the body is $2, the text every benchmark message carries).
WITH sent AS (
    INSERT INTO outbound_message (org_id, channel, status, to_recipient, body, attempt_count, claim_count,
                                  provider, provider_message_id, sent_at, created_at, updated_at)
    SELECT 'org' || (n % 40), (ARRAY['SMS','EMAIL','WHATSAPP'])[1 + n % 3], 'SENT',
           '+1555' || to_char(n, 'FM0000000'), $2::text, 1, 1, 'sandbox', 'pm' || n,
           t, t, t
      FROM generate_series(1, $1::int) AS n,
           LATERAL (SELECT now() - interval '30 days' + n * (interval '30 days' / $1::int)) AS at(t)
    RETURNING id, channel, created_at
)
INSERT INTO outbound_attempt (outbound_message_id, attempt_no, channel, provider, outcome, http_status,
                              duration_ms, provider_message_id, started_at, created_at)
SELECT id, 1, channel, 'sandbox', 'SENT', 201, 1, 'pm' || id, created_at, created_at
  FROM sent;

-- name: soak_queue
-- $1 SMS messages due now, to drain.
INSERT INTO outbound_message (org_id, channel, to_recipient, body)
SELECT 'bench', 'SMS', '+1666' || to_char(n, 'FM0000000'), $2::text
  FROM generate_series(1, $1::int) AS n;

-- name: soak_tables
-- Live and dead rows and sizes (bytes) of the two tables the drain writes.
SELECT relname AS table_name, n_live_tup AS live, n_dead_tup AS dead,
       pg_table_size(relid) AS table_bytes, pg_indexes_size(relid) AS index_bytes,
       autovacuum_count + vacuum_count AS vacuums
  FROM pg_stat_user_tables
 WHERE relname IN ('outbound_message', 'outbound_attempt')
 ORDER BY relname DESC;

-- name: soak_attempts_so_far
-- Attempt rows written so far: the identity sequence, read without scanning the table.
SELECT last_value FROM outbound_attempt_id_seq;
