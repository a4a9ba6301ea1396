-- Named queries of the HTTP API (OutboundMessageService). Every message query is scoped by org_id.
-- Index behind each: see tests/integration/api/test_api_query_plans.py.

-- name: api_insert_message
-- One message; $16 is the request's trace context (NULL unless tracing is on, docs/tracing.md). With an Idempotency-Key, a second insert of the same key does nothing (and returns no
-- row): the caller then reads the original (api_find_idempotent). Uses uq_outbound_message_idempotency.
INSERT INTO outbound_message
       (org_id, dossier_id, channel, to_recipient, template_code, template_language, template_params,
        subject, body, priority, max_attempts, correlation_id, idempotency_key, request_hash, send_at,
        traceparent)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
    ON CONFLICT (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, org_id, channel, status, to_recipient, body, subject, template_code, template_language,
          template_params, dossier_id, correlation_id, priority, max_attempts, attempt_count, send_at,
          error_code, error_message, provider, provider_message_id, delivery_status, delivery_updated_at,
          created_at, updated_at, sent_at, idempotency_key, request_hash;

-- name: api_insert_messages
-- A batch in one statement (the caller's transaction makes it all or nothing). Rows come back in
-- insertion order of their ids; rows whose idempotency key exists already are skipped.
INSERT INTO outbound_message
       (org_id, dossier_id, channel, to_recipient, template_code, template_language, template_params,
        subject, body, priority, max_attempts, correlation_id, idempotency_key, request_hash, send_at,
        traceparent)
SELECT *
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[],
              $8::text[], $9::text[], $10::smallint[], $11::int[], $12::text[], $13::text[], $14::text[],
              $15::timestamptz[], $16::text[])
    ON CONFLICT (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, org_id, channel, status, to_recipient, body, subject, template_code, template_language,
          template_params, dossier_id, correlation_id, priority, max_attempts, attempt_count, send_at,
          error_code, error_message, provider, provider_message_id, delivery_status, delivery_updated_at,
          created_at, updated_at, sent_at, idempotency_key, request_hash;

-- name: api_find_idempotent
-- The messages an earlier request created under these idempotency keys. Uses uq_outbound_message_idempotency.
SELECT id, org_id, channel, status, to_recipient, body, subject, template_code, template_language,
       template_params, dossier_id, correlation_id, priority, max_attempts, attempt_count, send_at,
       error_code, error_message, provider, provider_message_id, delivery_status, delivery_updated_at,
       created_at, updated_at, sent_at, idempotency_key, request_hash
  FROM outbound_message
 WHERE org_id = $1
   AND idempotency_key = ANY($2::text[])
 ORDER BY id;

-- name: api_get_message
-- Uses the primary key; another organisation's message is simply not found.
SELECT id, org_id, channel, status, to_recipient, body, subject, template_code, template_language,
       template_params, dossier_id, correlation_id, priority, max_attempts, attempt_count, send_at,
       error_code, error_message, provider, provider_message_id, delivery_status, delivery_updated_at,
       created_at, updated_at, sent_at, idempotency_key, request_hash
  FROM outbound_message
 WHERE id = $1
   AND org_id = $2;

-- name: api_get_attempts
-- A message's attempt history, oldest first. Uses outbound_attempt's (outbound_message_id, attempt_no) key.
SELECT a.attempt_no, a.channel, a.provider, a.outcome, a.applied, a.ambiguous, a.error_code,
       a.error_message, a.provider_code, a.provider_message_id, a.http_status, a.duration_ms,
       a.next_retry_at, a.started_at, a.created_at
  FROM outbound_attempt a
  JOIN outbound_message m ON m.id = a.outbound_message_id
 WHERE m.id = $1
   AND m.org_id = $2
 ORDER BY a.attempt_no;

-- name: api_list_messages
-- One page, newest first, after the keyset cursor ($9, $10). Optional filters are NULL when unused;
-- the API's pool plans each call with its values (plan_cache_mode = force_custom_plan), so the planner
-- picks the org index that matches the filters given: idx_outbound_message_org_{created,status,
-- dossier,correlation,template}.
SELECT id, org_id, channel, status, to_recipient, body, subject, template_code, template_language,
       template_params, dossier_id, correlation_id, priority, max_attempts, attempt_count, send_at,
       error_code, error_message, provider, provider_message_id, delivery_status, delivery_updated_at,
       created_at, updated_at, sent_at, idempotency_key, request_hash
  FROM outbound_message
 WHERE org_id = $1
   AND ($2::text IS NULL OR status = $2)
   AND ($3::text IS NULL OR channel = $3)
   AND ($4::text IS NULL OR dossier_id = $4)
   AND ($5::text IS NULL OR template_code = $5)
   AND ($6::text IS NULL OR correlation_id = $6)
   AND ($7::timestamptz IS NULL OR created_at >= $7)
   AND ($8::timestamptz IS NULL OR created_at < $8)
   AND ($9::timestamptz IS NULL OR (created_at, id) < ($9, $10::bigint))
 ORDER BY created_at DESC, id DESC
 LIMIT $11;

-- name: api_cancel_message
-- Only a QUEUED message can be cancelled: a SENDING one is already with a provider. The row lock makes
-- this and the worker's claim (FOR UPDATE SKIP LOCKED) exclusive; neither overwrites the other.
UPDATE outbound_message
   SET status = 'CANCELLED',
       leased_until = NULL,
       updated_at = now()
 WHERE id = $1
   AND org_id = $2
   AND status = 'QUEUED'
RETURNING id, org_id, channel, status, to_recipient, body, subject, template_code, template_language,
          template_params, dossier_id, correlation_id, priority, max_attempts, attempt_count, send_at,
          error_code, error_message, provider, provider_message_id, delivery_status, delivery_updated_at,
          created_at, updated_at, sent_at, idempotency_key, request_hash;

-- name: api_key_insert
INSERT INTO api_key (id, org_id, name, secret_hash)
VALUES ($1, $2, $3, $4)
RETURNING id, org_id, name, created_at, revoked_at;

-- name: api_key_lookup
-- Authentication: a live key by its public id (primary key).
SELECT id, org_id, secret_hash
  FROM api_key
 WHERE id = $1
   AND revoked_at IS NULL;

-- name: api_key_revoke
UPDATE api_key
   SET revoked_at = now()
 WHERE id = $1
   AND revoked_at IS NULL
RETURNING id, org_id, name, created_at, revoked_at;

-- name: api_key_list
-- Uses idx_api_key_org when an organisation is given.
SELECT id, org_id, name, created_at, revoked_at
  FROM api_key
 WHERE ($1::text IS NULL OR org_id = $1)
 ORDER BY org_id, created_at;
