-- The `outbound` ops commands: the runbook's manual actions, run in bounded batches and audited.
--
-- Message actions select with ops_selected (migration 0007: one status and the filters given, in
-- the order $1 status, $2 org_id, $3 channel, $4 error codes, $5 ids, $6 updated within, $7 not
-- updated for, $8 templates, $9 templates excluded, $10 only held ones), then change one batch of
-- ids at a time (ops_retry, ops_archive, ...), returning the ids changed. Each change statement
-- checks the status again, so a row that a worker moved on since it was selected is left alone.

-- name: ops_count
-- How many match, and the highest id (the batches stop there: rows added later are not touched).
SELECT count(*)::bigint AS matched, max(m.id) AS max_id
  FROM ops_selected($1, $2, $3, $4::text[], $5::bigint[], $6::interval, $7::interval, $8::text[], $9::text[],
                    $10::boolean) m;

-- name: ops_match
-- The next matching messages after id $11, up to id $12, at most $13 (in id order: the primary
-- key walks the table once over all batches).
SELECT m.id, m.org_id, m.channel, m.status, m.to_recipient, m.template_code, m.attempt_count,
       m.max_attempts, m.error_code, m.updated_at, m.retry_at
  FROM ops_selected($1, $2, $3, $4::text[], $5::bigint[], $6::interval, $7::interval, $8::text[], $9::text[],
                    $10::boolean) m
 WHERE m.id > $11 AND m.id <= $12
 ORDER BY m.id
 LIMIT $13;

-- name: ops_retry
-- Dead letters back to the queue: the runbook's reprocessing statement (scenario 2, step 4).
UPDATE outbound_message
   SET status = 'QUEUED', attempt_count = 0, error_code = NULL, error_message = NULL, updated_at = now()
 WHERE id = ANY($1::bigint[]) AND status = 'FAILED'
RETURNING id;

-- name: ops_archive
-- To outbound_message_archive, as the runbook's archiving step (scenario 2, step 5) does; the
-- attempts deleted by the cascade are copied to outbound_attempt_archive by its trigger. Only
-- messages in a final state: nothing a worker may still send.
WITH moved AS (
    DELETE FROM outbound_message
     WHERE id = ANY($1::bigint[]) AND status IN ('SENT', 'FAILED', 'CANCELLED')
    RETURNING *
)
INSERT INTO outbound_message_archive SELECT * FROM moved RETURNING id;

-- name: ops_cancel
-- Only QUEUED messages, as the API's cancel: a SENDING one is already with a provider.
UPDATE outbound_message
   SET status = 'CANCELLED', leased_until = NULL, updated_at = now()
 WHERE id = ANY($1::bigint[]) AND status = 'QUEUED'
RETURNING id;

-- name: ops_defer
-- Not before now() + $2: the runbook's deferral of non-urgent messages (scenario 4, option C).
UPDATE outbound_message
   SET updated_at = now() + $2::interval
 WHERE id = ANY($1::bigint[]) AND status = 'QUEUED'
RETURNING id;

-- name: ops_retry_now
-- Due at once: clears the attempts' next_retry_at as the runbook's forced retry (scenario 5,
-- step 5) does (a trigger mirrors it to outbound_message.retry_at), and brings a deferral back.
WITH attempts AS (
    UPDATE outbound_attempt a
       SET next_retry_at = NULL
      FROM outbound_message m
     WHERE a.outbound_message_id = m.id
       AND m.id = ANY($1::bigint[]) AND m.status = 'QUEUED'
       AND a.next_retry_at IS NOT NULL
)
UPDATE outbound_message
   SET retry_at = NULL, updated_at = LEAST(updated_at, now())
 WHERE id = ANY($1::bigint[]) AND status = 'QUEUED'
RETURNING id;

-- name: ops_reset_stale
-- SENDING rows untouched for long back to QUEUED (scenario 5, step 4), but never one whose lease
-- is still running: its worker may yet be sending it, and a requeue would send it twice.
UPDATE outbound_message
   SET status = 'QUEUED', leased_until = NULL, updated_at = now()
 WHERE id = ANY($1::bigint[]) AND status = 'SENDING'
   AND (leased_until IS NULL OR leased_until < now())
RETURNING id;

-- name: ops_release_held
-- Held WhatsApp messages due now (the release 0006's trigger does when the quota gets room); what
-- still does not fit is held again by the worker without burning an attempt.
WITH moved AS (
    UPDATE outbound_message m
       SET retry_at = now()
     WHERE m.id = ANY($1::bigint[]) AND m.status = 'QUEUED' AND m.retry_at > now()
    RETURNING m.id, m.claim_count
),
attempts AS (
    UPDATE outbound_attempt a
       SET next_retry_at = now()
      FROM moved
     WHERE a.outbound_message_id = moved.id
       AND a.attempt_no = moved.claim_count
       AND a.next_retry_at > now()
)
SELECT id FROM moved;

-- name: ops_dead_letter_summary
-- The runbook's scenario 2, step 1, for one channel or all.
SELECT channel, error_code, COUNT(*) AS count, MAX(updated_at) AS last_occurrence
  FROM outbound_message
 WHERE status = 'FAILED' AND attempt_count >= max_attempts
   AND ($1::text IS NULL OR channel = $1)
 GROUP BY channel, error_code
 ORDER BY count DESC
 LIMIT $2;

-- name: ops_dead_letters
-- Scenario 2, step 2: the latest dead letters (of one channel / error code, or all).
SELECT id, org_id, channel, error_code, error_message, to_recipient, template_code, attempt_count,
       updated_at
  FROM outbound_message
 WHERE status = 'FAILED' AND attempt_count >= max_attempts
   AND ($1::text IS NULL OR channel = $1)
   AND ($2::text IS NULL OR error_code = $2)
 ORDER BY updated_at DESC
 LIMIT $3;

-- name: ops_quota_row
-- One organisation's ledger row, locked for the change that follows.
SELECT org_id, messages_sent_count, quota_limit, reset_at, throttle_until
  FROM whatsapp_rate_limit
 WHERE org_id = $1
   FOR UPDATE;

-- name: ops_held_count
-- The organisation's WhatsApp messages held for quota or throttle (due later than now).
SELECT count(*)::bigint
  FROM outbound_message
 WHERE org_id = $1 AND channel = 'WHATSAPP' AND status = 'QUEUED' AND retry_at > now()
   AND error_code IN ('QUOTA_EXCEEDED', 'RATE_LIMIT_EXCEEDED');

-- name: ops_quota_set
-- A new limit (a raise releases held messages through 0006's trigger).
UPDATE whatsapp_rate_limit SET quota_limit = $2, updated_at = now() WHERE org_id = $1
RETURNING quota_limit;

-- name: ops_quota_halve
-- The runbook's scenario 4, option B, as written there.
UPDATE whatsapp_rate_limit SET quota_limit = quota_limit * 0.5, updated_at = now() WHERE org_id = $1
RETURNING quota_limit;

-- name: ops_throttle_clear
-- Lift a throttle in force (0006's trigger releases the messages it held).
UPDATE whatsapp_rate_limit SET throttle_until = NULL, updated_at = now()
 WHERE org_id = $1 AND throttle_until > now()
RETURNING org_id;

-- name: ops_throttled
-- The runbook's scenario 1, step 3.
SELECT * FROM whatsapp_rate_limit WHERE throttle_until > NOW() ORDER BY throttle_until DESC;

-- name: ops_provider_status
-- Each provider's runtime control row, its channel's queue and its calls of the last 5 minutes.
SELECT c.provider, c.channel, c.kind, c.enabled, c.priority, c.circuit_mode, c.circuit_state,
       c.circuit_since, c.circuit_reason, c.batch_size, c.updated_at,
       (SELECT count(*) FROM outbound_message m WHERE m.channel = c.channel AND m.status = 'QUEUED')::bigint
           AS queued,
       s.calls, s.sent
  FROM provider_control c
  LEFT JOIN LATERAL (
      SELECT count(*)::bigint AS calls, count(*) FILTER (WHERE a.outcome = 'SENT')::bigint AS sent
        FROM outbound_attempt a
       WHERE a.provider = c.provider AND a.created_at > now() - interval '5 minutes'
  ) s ON true
 ORDER BY c.channel, c.priority, c.provider;

-- name: ops_audit_start
INSERT INTO ops_audit (actor, action, reason, params, matched)
VALUES ($1, $2, $3, $4, $5)
RETURNING id;

-- name: ops_audit_batch
UPDATE ops_audit SET changed = changed + $2, batches = batches + 1 WHERE id = $1;

-- name: ops_audit_finish
UPDATE ops_audit
   SET outcome = $2, result = result || $3::jsonb, finished_at = now()
 WHERE id = $1;

-- name: ops_audit_list
SELECT id, started_at, finished_at, actor, db_user, action, reason, params, matched, changed, batches,
       outcome, result
  FROM ops_audit
 WHERE $1::text IS NULL OR action = $1
 ORDER BY started_at DESC, id DESC
 LIMIT $2;
