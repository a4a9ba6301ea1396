-- pgbench script for L_ref: one execution is one worker round of the reference lifecycle.
-- Transaction 1 claims up to :batch due messages (SKIP LOCKED, so clients never wait on each other)
-- and marks them SENDING; transaction 2 marks them SENT and writes one attempt row each.
-- An empty claim yields an empty array, so the second statement then does nothing.
-- Variables: :batch (rows per claim), :client_id (set by pgbench). One statement per line; run with
-- -M prepared (the claimed ids travel as one array parameter).
WITH picked AS (SELECT id FROM ref_message WHERE status = 'QUEUED' AND due_at <= now() ORDER BY due_at, id LIMIT :batch FOR UPDATE SKIP LOCKED), claimed AS (UPDATE ref_message AS m SET status = 'SENDING', attempts = m.attempts + 1, lease_owner = :client_id, leased_at = now(), updated_at = now() FROM picked WHERE m.id = picked.id RETURNING m.id, m.recipient, m.body) SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(sum(length(body)), 0) AS payload FROM claimed
\gset
WITH done AS (UPDATE ref_message SET status = 'SENT', provider_ref = 'SM' || id, sent_at = now(), lease_owner = NULL, leased_at = NULL, updated_at = now() WHERE id = ANY (:ids::bigint[]) AND status = 'SENDING' RETURNING id, attempts) INSERT INTO ref_attempt (message_id, attempt_no, outcome, http_status, provider_ref, started_at, finished_at) SELECT id, attempts, 'SENT', 201, 'SM' || id, now(), now() FROM done;
