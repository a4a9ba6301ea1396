-- QuotaPolicy: whatsapp_quota_policy (the operator is its single writer) and the ledger's limit.

-- name: quota_policy_upsert
INSERT INTO whatsapp_quota_policy AS p
       (org_id, daily_limit, reset_period_seconds, messages_per_second, pair_interval_seconds, alert_thresholds,
        urgent_templates, defer_non_urgent_above_percent, fallback_channel, observed_generation, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
ON CONFLICT (org_id) DO UPDATE
   SET daily_limit = EXCLUDED.daily_limit,
       reset_period_seconds = EXCLUDED.reset_period_seconds,
       messages_per_second = EXCLUDED.messages_per_second,
       pair_interval_seconds = EXCLUDED.pair_interval_seconds,
       alert_thresholds = EXCLUDED.alert_thresholds,
       urgent_templates = EXCLUDED.urgent_templates,
       defer_non_urgent_above_percent = EXCLUDED.defer_non_urgent_above_percent,
       fallback_channel = EXCLUDED.fallback_channel,
       observed_generation = EXCLUDED.observed_generation,
       updated_at = now()
 WHERE (p.daily_limit, p.reset_period_seconds, p.messages_per_second, p.pair_interval_seconds, p.alert_thresholds,
        p.urgent_templates, p.defer_non_urgent_above_percent, p.fallback_channel, p.observed_generation)
       IS DISTINCT FROM
       (EXCLUDED.daily_limit, EXCLUDED.reset_period_seconds, EXCLUDED.messages_per_second,
        EXCLUDED.pair_interval_seconds, EXCLUDED.alert_thresholds, EXCLUDED.urgent_templates,
        EXCLUDED.defer_non_urgent_above_percent, EXCLUDED.fallback_channel, EXCLUDED.observed_generation);

-- name: quota_policy_delete
DELETE FROM whatsapp_quota_policy WHERE org_id = $1;

-- name: ledger_row
-- The runbook's scenario 4 columns (whatsapp_rate_limit is the ledger of record).
SELECT messages_sent_count, quota_limit, reset_at, throttle_until
  FROM whatsapp_rate_limit
 WHERE org_id = $1;

-- name: ledger_set_limit
-- The policy's limit into the ledger; a new organisation's period starts now.
INSERT INTO whatsapp_rate_limit (org_id, quota_limit, reset_at)
VALUES ($1, $2, now() + $3::float8 * interval '1 second')
ON CONFLICT (org_id) DO UPDATE
   SET quota_limit = EXCLUDED.quota_limit, updated_at = now();
