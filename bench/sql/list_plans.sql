-- A message table for the EXPLAIN of the API's list queries (bench/list_plans.py).

-- name: list_plans_fill
-- $1 messages over 40 organisations, one a minute: 2 % QUEUED, 1 % SENDING, 3 % FAILED, the rest
-- SENT; half with a dossier, a third with a template, all with a correlation id.
INSERT INTO outbound_message (org_id, channel, status, to_recipient, dossier_id, correlation_id,
                              template_code, created_at, leased_until)
SELECT 'org' || (n % 40),
       (ARRAY['SMS','EMAIL','WHATSAPP'])[1 + n % 3],
       CASE WHEN n % 50 = 0 THEN 'QUEUED' WHEN n % 97 = 0 THEN 'SENDING'
            WHEN n % 31 = 0 THEN 'FAILED' ELSE 'SENT' END,
       '+1415555' || lpad((n % 10000)::text, 4, '0'),
       CASE WHEN n % 2 = 0 THEN 'D' || (n % 3000) END,
       'c' || (n / 10),
       CASE WHEN n % 3 = 2 THEN 'tpl_' || (n % 20) END,
       '2026-01-01'::timestamptz + n * interval '1 minute',
       CASE WHEN n % 97 = 0 THEN now() + interval '1 minute' END
  FROM generate_series(1, $1::int) AS n;
