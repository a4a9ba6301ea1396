-- Named queries of the delivery callbacks: the endpoints an organisation registers through the
-- API, and the dispatcher's outbox (docs/callbacks.md). The outbox rows themselves are written by
-- the statements that change a message's status (complete_batch, recover_expired_leases,
-- record_delivery_events), in the same transaction, only for organisations with an endpoint.

-- name: callback_endpoint_count
SELECT count(*)::int FROM outbound_callback_endpoint WHERE org_id = $1;

-- name: create_callback_endpoint
-- $1 org, $2 url, $3 description, $4 secret. NULL when the organisation already has this URL.
INSERT INTO outbound_callback_endpoint (org_id, url, description, secret)
VALUES ($1, $2, $3, $4)
    ON CONFLICT (org_id, url) DO NOTHING
RETURNING id, url, description, created_at, rotated_at, previous_secret_until;

-- name: list_callback_endpoints
SELECT id, url, description, created_at, rotated_at, previous_secret_until
  FROM outbound_callback_endpoint
 WHERE org_id = $1
 ORDER BY id;

-- name: delete_callback_endpoint
-- Its pending deliveries go with it (ON DELETE CASCADE).
DELETE FROM outbound_callback_endpoint WHERE org_id = $1 AND id = $2 RETURNING id;

-- name: rotate_callback_secret
-- $3 the new secret; the current one keeps signing for $4 more seconds (0: stops at once).
UPDATE outbound_callback_endpoint
   SET previous_secret       = CASE WHEN $4::float8 > 0 THEN secret END,
       previous_secret_until = CASE WHEN $4::float8 > 0 THEN now() + $4::float8 * interval '1 second' END,
       secret                = $3,
       rotated_at            = now()
 WHERE org_id = $1 AND id = $2
RETURNING id, url, description, created_at, rotated_at, previous_secret_until;

-- name: claim_callbacks
-- Claim up to $1 due deliveries for $2 seconds: a dispatcher that dies with them leaves them due
-- again when the lease ends (at least once). Uses idx_outbound_callback_outbox_due.
WITH due AS (
    SELECT id
      FROM outbound_callback_outbox
     WHERE status = 'PENDING'
       AND next_attempt_at <= now()
     ORDER BY next_attempt_at
     LIMIT $1
       FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE outbound_callback_outbox o
       SET attempts        = o.attempts + 1,
           next_attempt_at = now() + $2::float8 * interval '1 second'
     WHERE o.id = ANY (ARRAY(SELECT id FROM due))  -- by primary key, however small the outbox
    RETURNING o.id, o.endpoint_id, o.org_id, o.outbound_message_id, o.event, o.payload, o.attempts, o.created_at
)
SELECT c.*, e.url, e.secret,
       CASE WHEN e.previous_secret_until > now() THEN e.previous_secret END AS previous_secret
  FROM claimed c
  JOIN outbound_callback_endpoint e ON e.id = c.endpoint_id;

-- name: callback_delivered
UPDATE outbound_callback_outbox
   SET status = 'DELIVERED', delivered_at = now(), last_http_status = $2, last_error = NULL
 WHERE id = $1 AND status = 'PENDING';

-- name: callback_retry
-- Failed attempt: due again in $4 seconds, or FAILED for good when $5 is true (out of attempts).
UPDATE outbound_callback_outbox
   SET status           = CASE WHEN $5::bool THEN 'FAILED' ELSE 'PENDING' END,
       next_attempt_at  = now() + $4::float8 * interval '1 second',
       last_http_status = $2,
       last_error       = $3
 WHERE id = $1 AND status = 'PENDING';

-- name: callback_outbox_stats
-- Outbox depth and the age of its oldest pending row (metrics). Uses idx_outbound_callback_outbox_due.
SELECT count(*)::int AS depth,
       COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest_age_seconds
  FROM outbound_callback_outbox
 WHERE status = 'PENDING';
