-- Counts behind L (our own claim_batch + complete_batch under pgbench), in a migrated database.

-- name: limit_counts
-- Messages the run finished (one attempt row each), messages SENT, and messages still waiting.
SELECT (SELECT count(*) FROM outbound_attempt) AS completed,
       (SELECT count(*) FROM outbound_message WHERE status = 'SENT') AS sent,
       (SELECT count(*) FROM outbound_message WHERE status = 'QUEUED') AS queued;
