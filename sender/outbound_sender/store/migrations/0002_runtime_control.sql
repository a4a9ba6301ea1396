-- Runtime control: what the operator (the single writer) publishes and running workers read
-- every cycle, so switches reach them within seconds without a restart. Without Kubernetes the
-- ops CLI writes the same rows. No rows for a channel means: not controlled, send as configured.

CREATE TABLE provider_control (
    -- The ChannelProvider's name; workers record it as outbound_attempt.provider.
    provider                    text        PRIMARY KEY,
    channel                     text        NOT NULL CHECK (channel IN ('SMS', 'EMAIL', 'WHATSAPP')),
    kind                        text        NOT NULL CHECK (kind IN ('twilio', 'sendgrid', 'whatsapp', 'sandbox')),
    enabled                     boolean     NOT NULL DEFAULT true,
    -- Failover order inside a channel: the lowest usable priority sends, the others stand by.
    priority                    integer     NOT NULL DEFAULT 100,
    circuit_mode                text        NOT NULL DEFAULT 'Auto'
                                            CHECK (circuit_mode IN ('Auto', 'ForceOpen', 'ForceClosed')),
    circuit_state               text        NOT NULL DEFAULT 'CLOSED'
                                            CHECK (circuit_state IN ('CLOSED', 'OPEN', 'HALF_OPEN')),
    circuit_since               timestamptz NOT NULL DEFAULT now(),
    circuit_reason              text,
    half_open_probes_per_minute integer     NOT NULL DEFAULT 6 CHECK (half_open_probes_per_minute >= 1),
    batch_size                  integer     NOT NULL DEFAULT 10 CHECK (batch_size BETWEEN 1 AND 1000),
    messages_per_second         numeric     CHECK (messages_per_second > 0),
    observed_generation         bigint,
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_provider_control_channel ON provider_control (channel, priority);

-- WhatsApp limits per organisation (the QuotaPolicy resource). whatsapp_rate_limit stays the
-- ledger (used count, the limit in force, reset time, throttle).
CREATE TABLE whatsapp_quota_policy (
    org_id                         text        PRIMARY KEY,
    daily_limit                    integer     CHECK (daily_limit >= 0),  -- NULL: unlimited tier
    reset_period_seconds           integer     NOT NULL DEFAULT 86400 CHECK (reset_period_seconds > 0),
    messages_per_second            numeric     NOT NULL DEFAULT 80
                                               CHECK (messages_per_second > 0 AND messages_per_second <= 1000),
    pair_interval_seconds          numeric     NOT NULL DEFAULT 6 CHECK (pair_interval_seconds >= 0),
    alert_thresholds               integer[]   NOT NULL DEFAULT '{70,85,95}',
    urgent_templates               text[]      NOT NULL DEFAULT '{urgent_alert,appointment_reminder}',
    defer_non_urgent_above_percent integer     CHECK (defer_non_urgent_above_percent BETWEEN 1 AND 100),
    fallback_channel               text        CHECK (fallback_channel IN ('SMS', 'EMAIL')),
    observed_generation            bigint,
    updated_at                     timestamptz NOT NULL DEFAULT now()
);

-- Workers LISTEN for this, so a circuit opened by `kubectl patch` stops sends within a second.
CREATE FUNCTION runtime_control_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbound_control', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER provider_control_changed
    AFTER INSERT OR UPDATE OR DELETE ON provider_control
    FOR EACH STATEMENT EXECUTE FUNCTION runtime_control_notify();

CREATE TRIGGER whatsapp_quota_policy_changed
    AFTER INSERT OR UPDATE OR DELETE ON whatsapp_quota_policy
    FOR EACH STATEMENT EXECUTE FUNCTION runtime_control_notify();
