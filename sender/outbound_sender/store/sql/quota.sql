-- WhatsApp daily quota per organisation: PostgreSQL is the ledger of record.

-- name: quota_reserve
-- Take one message of the organisation's quota, atomically (the row lock serializes workers, so
-- the count never passes the ceiling). The ceiling is $3 percent of quota_limit: 100 for urgent
-- templates, the deferral threshold for the others. An elapsed window ($2 seconds) restarts at 1.
-- A manual UPDATE ... SET quota_limit = ... applies to the very next reservation.
UPDATE whatsapp_rate_limit
   SET messages_sent_count = CASE WHEN reset_at <= now() THEN 1 ELSE messages_sent_count + 1 END,
       reset_at            = CASE WHEN reset_at <= now()
                                  THEN now() + $2::float8 * interval '1 second' ELSE reset_at END,
       updated_at          = now()
 WHERE org_id = $1
   AND (throttle_until IS NULL OR throttle_until <= now())
   AND CASE WHEN reset_at <= now() THEN 0 ELSE messages_sent_count END
       < floor(quota_limit * $3::numeric / 100)
RETURNING messages_sent_count, quota_limit, reset_at;

-- name: quota_state
-- Why a reservation was refused ($2: the ceiling percent it asked for), and for how long.
SELECT messages_sent_count, quota_limit, reset_at, throttle_until,
       throttle_until > now() AS throttled,
       messages_sent_count >= quota_limit AS exhausted,
       EXTRACT(EPOCH FROM GREATEST(
           CASE WHEN messages_sent_count >= floor(quota_limit * $2::numeric / 100) THEN reset_at END,
           throttle_until) - now())::float8 AS wait_seconds
  FROM whatsapp_rate_limit
 WHERE org_id = $1;

-- name: quota_ensure
INSERT INTO whatsapp_rate_limit (org_id, quota_limit, reset_at)
VALUES ($1, $2, now() + $3::float8 * interval '1 second')
ON CONFLICT (org_id) DO NOTHING;

-- name: quota_release
-- Give a reservation back after a definite failure (the provider did not accept the message),
-- only within the window it was taken from.
UPDATE whatsapp_rate_limit
   SET messages_sent_count = GREATEST(messages_sent_count - 1, 0), updated_at = now()
 WHERE org_id = $1 AND reset_at = $2;

-- name: quota_throttle
-- The provider throttled the organisation (WhatsApp 4 / 17 / 80007): no reservation until then.
UPDATE whatsapp_rate_limit
   SET throttle_until = GREATEST(COALESCE(throttle_until, now()), now() + $2::float8 * interval '1 second'),
       updated_at     = now()
 WHERE org_id = $1;

-- name: quota_status
-- The runbook's scenario-4 view, with the policy beside the ledger.
SELECT l.org_id, l.messages_sent_count AS used, l.quota_limit AS quota_limit,
       GREATEST(l.quota_limit - l.messages_sent_count, 0) AS remaining,
       round(100.0 * l.messages_sent_count / NULLIF(l.quota_limit, 0), 1) AS used_percent,
       l.reset_at, l.throttle_until, p.daily_limit AS policy_limit,
       p.defer_non_urgent_above_percent AS defer_above, p.fallback_channel
  FROM whatsapp_rate_limit l
  LEFT JOIN whatsapp_quota_policy p USING (org_id)
 WHERE $1::text IS NULL OR l.org_id = $1
 ORDER BY used_percent DESC NULLS LAST, l.org_id;
