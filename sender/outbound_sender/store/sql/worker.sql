-- Named queries of the worker's hot path. Each `-- name:` block is one statement.
-- Index behind each: see tests/integration/test_query_plans.py.

-- name: claim_batch
-- Claim up to $2 due messages of the channels $1 for worker $3, leased for $4 seconds (database clock).
-- Uses idx_outbound_message_claim (priority DESC, due_at) WHERE status = 'QUEUED'.
WITH due AS (
    SELECT id
      FROM outbound_message
     WHERE status = 'QUEUED'
       AND due_at <= now()
       AND channel = ANY($1::text[])
     ORDER BY priority DESC, due_at
     LIMIT $2
       FOR UPDATE SKIP LOCKED
)
UPDATE outbound_message m
   SET status        = 'SENDING',
       attempt_count = m.attempt_count + 1,
       claim_count   = m.claim_count + 1,
       lease_id      = gen_random_uuid(),
       lease_owner   = $3,
       leased_until  = now() + $4::float8 * interval '1 second',
       updated_at    = now()
  FROM due
 WHERE m.id = due.id
RETURNING m.id, m.org_id, m.channel, m.to_recipient, m.lease_id, m.claim_count, m.attempt_count,
          m.max_attempts, m.body, m.subject, m.template_code, m.template_language, m.template_params,
          m.dossier_id, m.correlation_id, m.priority, m.created_at, m.traceparent;

-- name: complete_batch
-- Record the results of one or more provider calls, each fenced by the lease it was claimed under.
-- A result whose lease was taken over (recovered and re-claimed) is kept as an attempt with
-- applied = false and changes nothing. A slow send whose lease merely expired still lands.
WITH r AS (
    SELECT *
      FROM unnest($1::bigint[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[],
                  $8::text[], $9::text[], $10::text[], $11::int[], $12::int[], $13::bigint[], $14::bool[],
                  $15::text[])
           AS r(id, lease_id, attempt_no, outcome, error_code, error_message, provider, provider_code,
                provider_message, provider_message_id, http_status, duration_ms, retry_delay_ms,
                ambiguous, channel)
),
upd AS (
    UPDATE outbound_message m
       SET status = CASE
                      WHEN r.outcome = 'SENT' THEN 'SENT'
                      WHEN r.outcome = 'DEFER' THEN 'QUEUED'
                      WHEN r.outcome = 'RETRY' AND m.attempt_count < m.max_attempts THEN 'QUEUED'
                      ELSE 'FAILED'
                    END,
           attempt_count = CASE WHEN r.outcome = 'DEFER' THEN GREATEST(m.attempt_count - 1, 0)
                                ELSE m.attempt_count END,
           -- A permanent error ends the message's attempts: it belongs to the dead-letter queue
           -- (the runbook's DLQ queries select attempt_count >= max_attempts).
           max_attempts  = CASE WHEN r.outcome = 'FAILED' THEN LEAST(m.max_attempts, m.attempt_count)
                                ELSE m.max_attempts END,
           retry_at      = CASE WHEN r.outcome = 'DEFER'
                                  OR (r.outcome = 'RETRY' AND m.attempt_count < m.max_attempts)
                                THEN now() + r.retry_delay_ms * interval '1 millisecond' END,
           error_code    = CASE WHEN r.outcome = 'SENT' THEN NULL ELSE r.error_code END,
           error_message = CASE WHEN r.outcome = 'SENT' THEN NULL ELSE r.error_message END,
           provider      = COALESCE(r.provider, m.provider),
           provider_message_id = COALESCE(r.provider_message_id, m.provider_message_id),
           sent_at       = CASE WHEN r.outcome = 'SENT' THEN now() ELSE m.sent_at END,
           leased_until  = NULL,
           updated_at    = now()
      FROM r
     WHERE m.id = r.id
       AND m.lease_id = r.lease_id
       AND (m.status IN ('SENDING', 'QUEUED') OR (m.status = 'FAILED' AND m.error_code = 'LEASE_EXPIRED'))
    RETURNING m.id, m.status, m.retry_at, m.org_id, m.channel, m.provider, m.provider_message_id,
              m.error_code, m.error_message, m.correlation_id, m.dossier_id,
              EXTRACT(EPOCH FROM now() - GREATEST(m.created_at, m.send_at))::float8 AS latency_seconds
),
-- Delivery callbacks (docs/callbacks.md): a message that became SENT or FAILED gets one outbox row
-- per endpoint of its organisation; organisations without one get none (a probe of the endpoints'
-- (org_id, url) key, nothing written).
cb AS (
    INSERT INTO outbound_callback_outbox (endpoint_id, org_id, outbound_message_id, event, payload)
    SELECT e.id, u.org_id, u.id, u.status,
           outbound_callback_payload(u.id, u.status, u.channel, u.provider, r.provider_code,
                                     u.provider_message_id, u.error_code, u.error_message, u.correlation_id,
                                     u.dossier_id, now(), NULL)
      FROM upd u
      JOIN r ON r.id = u.id
      JOIN outbound_callback_endpoint e ON e.org_id = u.org_id
     WHERE u.status IN ('SENT', 'FAILED')
),
att AS (
    INSERT INTO outbound_attempt AS a
           (outbound_message_id, attempt_no, channel, provider, outcome, applied, ambiguous, error_code,
            error_message, provider_code, provider_message, provider_message_id, http_status,
            duration_ms, next_retry_at, worker_id, started_at)
    SELECT r.id, r.attempt_no, r.channel, r.provider,
           CASE WHEN u.status = 'FAILED' THEN 'FAILED' ELSE r.outcome END,
           u.id IS NOT NULL, r.ambiguous, r.error_code, r.error_message, r.provider_code,
           r.provider_message, r.provider_message_id, r.http_status, r.duration_ms,
           CASE WHEN u.status = 'QUEUED' THEN u.retry_at END, $16,
           now() - COALESCE(r.duration_ms, 0) * interval '1 millisecond'
      FROM r LEFT JOIN upd u ON u.id = r.id
        ON CONFLICT (outbound_message_id, attempt_no) DO UPDATE
       SET outcome = EXCLUDED.outcome, applied = EXCLUDED.applied, ambiguous = EXCLUDED.ambiguous,
           error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message,
           provider = EXCLUDED.provider, provider_code = EXCLUDED.provider_code,
           provider_message = EXCLUDED.provider_message,
           provider_message_id = EXCLUDED.provider_message_id, http_status = EXCLUDED.http_status,
           duration_ms = EXCLUDED.duration_ms, next_retry_at = EXCLUDED.next_retry_at
)
SELECT r.id, r.outcome, r.channel, r.error_code, u.status, u.latency_seconds, u.id IS NOT NULL AS applied,
       EXTRACT(EPOCH FROM u.retry_at - now())::float8 AS retry_in_seconds
  FROM r LEFT JOIN upd u ON u.id = r.id;

-- name: recover_expired_leases
-- Put back SENDING rows whose lease expired (their worker died or stalled). Only SENDING rows are
-- touched, so a message that reached a final state is never overwritten. A message out of attempts
-- goes to the dead-letter queue instead of looping. Reads the SENDING rows (those in flight) through
-- idx_outbound_message_status_created: an index of its own would cost one more entry per claim.
WITH expired AS (
    SELECT id
      FROM outbound_message
     WHERE status = 'SENDING'
       AND leased_until < now()
     ORDER BY leased_until
     LIMIT $1
       FOR UPDATE SKIP LOCKED
),
rec AS (
    UPDATE outbound_message m
       SET status        = CASE WHEN m.attempt_count >= m.max_attempts THEN 'FAILED' ELSE 'QUEUED' END,
           error_code    = 'LEASE_EXPIRED',
           error_message = 'lease of ' || COALESCE(m.lease_owner, 'unknown worker')
                           || ' expired during the send; the provider may have accepted it',
           leased_until  = NULL,
           updated_at    = now()
      FROM expired
     WHERE m.id = expired.id
    RETURNING m.id, m.status, m.channel, m.claim_count, m.lease_owner, m.org_id, m.provider,
              m.provider_message_id, m.error_code, m.error_message, m.correlation_id, m.dossier_id
),
-- Delivery callbacks: a message out of attempts is FAILED (see complete_batch).
cb AS (
    INSERT INTO outbound_callback_outbox (endpoint_id, org_id, outbound_message_id, event, payload)
    SELECT e.id, rec.org_id, rec.id, 'FAILED',
           outbound_callback_payload(rec.id, 'FAILED', rec.channel, rec.provider, NULL,
                                     rec.provider_message_id, rec.error_code, rec.error_message,
                                     rec.correlation_id, rec.dossier_id, now(), NULL)
      FROM rec
      JOIN outbound_callback_endpoint e ON e.org_id = rec.org_id
     WHERE rec.status = 'FAILED'
),
att AS (
    INSERT INTO outbound_attempt
           (outbound_message_id, attempt_no, channel, outcome, ambiguous, error_code, error_message,
            worker_id)
    SELECT id, claim_count, channel, CASE WHEN status = 'FAILED' THEN 'FAILED' ELSE 'RETRY' END, true,
           'LEASE_EXPIRED', 'lease expired before a result was recorded', lease_owner
      FROM rec
        ON CONFLICT (outbound_message_id, attempt_no) DO NOTHING
)
SELECT id, status, channel, lease_owner FROM rec;

-- name: release_leases
-- Graceful shutdown: hand back messages claimed by this worker but not yet sent.
UPDATE outbound_message
   SET status = 'QUEUED', attempt_count = GREATEST(attempt_count - 1, 0), leased_until = NULL,
       updated_at = now()
 WHERE id = ANY($1::bigint[])
   AND lease_id = ANY($2::uuid[])
   AND status = 'SENDING'
RETURNING id;

-- name: reroute_message
-- A WhatsApp message moved to its organisation's fallback channel (quota above the deferral
-- threshold): back to QUEUED on the new channel, due now, no attempt burnt; the decision is kept
-- in routing_note and as an attempt row.
WITH moved AS (
    UPDATE outbound_message
       SET channel = $3, status = 'QUEUED', attempt_count = GREATEST(attempt_count - 1, 0),
           routing_note = $4, leased_until = NULL, updated_at = now()
     WHERE id = $1 AND lease_id = $2 AND status = 'SENDING'
    RETURNING id, claim_count
)
INSERT INTO outbound_attempt (outbound_message_id, attempt_no, channel, outcome, error_code, error_message, worker_id)
SELECT id, claim_count, 'WHATSAPP', 'DEFER', 'QUOTA_EXCEEDED', $4, $5 FROM moved;
