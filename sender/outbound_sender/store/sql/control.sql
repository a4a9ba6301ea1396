-- Runtime control rows (provider_control): read by workers every cycle, written by the operator.

-- name: control_rows
SELECT provider, channel, kind, enabled, priority, circuit_mode, circuit_state, circuit_since,
       half_open_probes_per_minute, batch_size, messages_per_second
  FROM provider_control
 ORDER BY channel, priority, provider;
