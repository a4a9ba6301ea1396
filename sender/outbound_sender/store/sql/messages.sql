-- Named queries of the enqueue path and message look-ups.

-- name: insert_message
-- One message; the outbound_message_ready trigger NOTIFYs workers in the same transaction.
INSERT INTO outbound_message
       (org_id, dossier_id, channel, to_recipient, template_code, template_language, template_params,
        subject, body, priority, max_attempts, correlation_id, idempotency_key, request_hash, send_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
RETURNING id, status, created_at;

-- name: insert_messages
-- Many messages in one statement (batch enqueue, benchmarks).
INSERT INTO outbound_message
       (org_id, dossier_id, channel, to_recipient, template_code, template_language, template_params,
        subject, body, priority, max_attempts, correlation_id, send_at)
SELECT *
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[],
              $8::text[], $9::text[], $10::smallint[], $11::int[], $12::text[], $13::timestamptz[])
RETURNING id;

-- name: get_message
SELECT * FROM outbound_message WHERE id = $1;

-- name: get_attempts
SELECT * FROM outbound_attempt WHERE outbound_message_id = $1 ORDER BY attempt_no;

-- name: status_counts
-- Queue depth by status. Uses idx_outbound_message_status_created (index-only scan when vacuumed).
SELECT status, count(*)::bigint AS count FROM outbound_message GROUP BY status;
