-- provider_control: the operator is its single writer (one row per ChannelProvider).

-- name: control_row
SELECT provider, channel, kind, enabled, priority, circuit_mode, circuit_state, circuit_since, circuit_reason,
       half_open_probes_per_minute, batch_size, observed_generation
  FROM provider_control
 WHERE provider = $1;

-- name: control_upsert
-- Writes every column, so a hand edit of any of them is overwritten (drift correction).
INSERT INTO provider_control AS c
       (provider, channel, kind, enabled, priority, circuit_mode, circuit_state, circuit_since, circuit_reason,
        half_open_probes_per_minute, batch_size, observed_generation, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
ON CONFLICT (provider) DO UPDATE
   SET channel = EXCLUDED.channel,
       kind = EXCLUDED.kind,
       enabled = EXCLUDED.enabled,
       priority = EXCLUDED.priority,
       circuit_mode = EXCLUDED.circuit_mode,
       circuit_state = EXCLUDED.circuit_state,
       circuit_since = EXCLUDED.circuit_since,
       circuit_reason = EXCLUDED.circuit_reason,
       half_open_probes_per_minute = EXCLUDED.half_open_probes_per_minute,
       batch_size = EXCLUDED.batch_size,
       observed_generation = EXCLUDED.observed_generation,
       updated_at = now();

-- name: control_delete
DELETE FROM provider_control WHERE provider = $1;

-- name: database_now
-- The operator's clock is the database's (the one circuit_since and outbound_attempt use).
SELECT date_trunc('second', now()) AS now;
