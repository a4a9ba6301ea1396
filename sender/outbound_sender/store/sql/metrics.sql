-- Database-derived gauges (observability/refresher.py): one statement per refresh.
-- Every pod runs it every OUTBOUND_METRICS_UPDATE_INTERVAL_MS; each part reads an index:
--   QUEUED            idx_outbound_message_claim (partial, status = 'QUEUED'): the queue itself
--   SENDING           idx_outbound_message_status_created: at most the in-flight
--   FAILED            idx_outbound_message_status_created: the dead-letter queue (archived after 7 days)
--   SENT              idx_outbound_message_status_created, range on created_at: the last 24 hours only,
--                     so the cost follows the daily volume, not the table's age
--   whatsapp_rate_limit  one row per organisation, capped at $1 rows (closest to their limit first)

-- name: metrics_snapshot
WITH queued AS (
    SELECT count(*) AS n,
           count(*) FILTER (WHERE attempt_count >= 3
                              AND updated_at < now() - interval '2 hours') AS stuck,
           EXTRACT(EPOCH FROM now() - min(due_at) FILTER (WHERE due_at <= now()))::float8 AS oldest_due_age
      FROM outbound_message
     WHERE status = 'QUEUED'
),
failed AS (
    SELECT count(*) AS n,
           count(*) FILTER (WHERE attempt_count >= max_attempts) AS dead_letter
      FROM outbound_message
     WHERE status = 'FAILED'
),
quota AS (
    SELECT org_id,
           CASE WHEN reset_at <= now() THEN 0 ELSE messages_sent_count END AS used,
           quota_limit,
           COALESCE(throttle_until > now(), false) AS throttled,
           EXTRACT(EPOCH FROM reset_at)::float8 AS reset_at
      FROM whatsapp_rate_limit
)
SELECT queued.n AS queued,
       queued.stuck,
       COALESCE(queued.oldest_due_age, 0) AS oldest_due_age,
       (SELECT count(*) FROM outbound_message WHERE status = 'SENDING') AS sending,
       (SELECT count(*) FROM outbound_message
         WHERE status = 'SENT' AND created_at > now() - interval '24 hours') AS sent,
       failed.n AS failed,
       failed.dead_letter,
       (SELECT COALESCE(json_agg(q ORDER BY q.used::float8 / GREATEST(q.quota_limit, 1) DESC, q.org_id), '[]')
          FROM (SELECT * FROM quota
                 ORDER BY used::float8 / GREATEST(quota_limit, 1) DESC, org_id
                 LIMIT $1) q) AS quota
  FROM queued, failed;
