-- Runtime control rows (provider_control): read by workers every cycle, written by the operator.

-- name: control_rows
SELECT provider, channel, kind, enabled, priority, circuit_mode, circuit_state, circuit_since,
       half_open_probes_per_minute, batch_size
  FROM provider_control
 ORDER BY channel, priority, provider;

-- name: quota_policies
SELECT org_id, daily_limit, reset_period_seconds, messages_per_second, pair_interval_seconds,
       urgent_templates, defer_non_urgent_above_percent, fallback_channel
  FROM whatsapp_quota_policy;
