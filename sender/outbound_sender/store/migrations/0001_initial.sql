-- The message queue, its attempt history and the WhatsApp quota ledger.
-- Column names are the operations runbook's (docs/runbook.md): its SQL must run unchanged.

CREATE TABLE outbound_message (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id              text        NOT NULL,
    dossier_id          text,
    channel             text        NOT NULL CHECK (channel IN ('SMS', 'EMAIL', 'WHATSAPP')),
    status              text        NOT NULL DEFAULT 'QUEUED'
                                    CHECK (status IN ('QUEUED', 'SENDING', 'SENT', 'FAILED', 'CANCELLED')),
    to_recipient        text        NOT NULL,
    template_code       text,
    template_language   text,
    template_params     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    subject             text,
    body                text,
    priority            smallint    NOT NULL DEFAULT 0,
    attempt_count       integer     NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    max_attempts        integer     NOT NULL DEFAULT 5 CHECK (max_attempts >= 0),
    -- Every claim increments claim_count (never reset, unlike attempt_count which the runbook
    -- resets when re-queuing): it numbers outbound_attempt rows uniquely.
    claim_count         integer     NOT NULL DEFAULT 0,
    error_code          text,
    error_message       text,
    correlation_id      text,
    idempotency_key     text,
    request_hash        text,
    provider            text,
    provider_message_id text,
    delivery_status     text,
    delivery_updated_at timestamptz,
    send_at             timestamptz,
    -- Mirror of the latest outbound_attempt.next_retry_at (kept by a trigger, so the runbook's
    -- "UPDATE outbound_attempt SET next_retry_at = NULL" releases the retry at once).
    retry_at            timestamptz,
    -- Lease of the worker that claimed the row (database clock). lease_id fences late completions.
    lease_id            uuid,
    lease_owner         text,
    leased_until        timestamptz,
    sent_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- A QUEUED row is due when every "not before" has passed: updated_at (the runbook defers a
    -- message by moving updated_at into the future), the scheduled send time and the retry time.
    due_at              timestamptz GENERATED ALWAYS AS (GREATEST(updated_at, send_at, retry_at)) STORED
);

COMMENT ON TABLE outbound_message IS 'Outbound queue: QUEUED -> SENDING -> SENT | QUEUED (retry) | FAILED (DLQ)';

-- The three indexes the runbook names.
CREATE INDEX idx_outbound_message_status_created ON outbound_message (status, created_at);
CREATE INDEX idx_outbound_message_channel_status ON outbound_message (channel, status);

-- Claim path: due QUEUED rows by priority, then due time.
CREATE INDEX idx_outbound_message_claim ON outbound_message (priority DESC, due_at)
    WHERE status = 'QUEUED';
-- Lease recovery: expired SENDING rows.
CREATE INDEX idx_outbound_message_lease ON outbound_message (leased_until)
    WHERE status = 'SENDING';
-- API idempotency, scoped per organisation.
CREATE UNIQUE INDEX uq_outbound_message_idempotency ON outbound_message (org_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX idx_outbound_message_provider_id ON outbound_message (provider_message_id)
    WHERE provider_message_id IS NOT NULL;

CREATE TABLE outbound_attempt (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbound_message_id bigint      NOT NULL REFERENCES outbound_message (id) ON DELETE CASCADE,
    attempt_no          integer     NOT NULL,
    channel             text        NOT NULL,
    provider            text,
    outcome             text        NOT NULL CHECK (outcome IN ('SENT', 'RETRY', 'FAILED', 'DEFER')),
    -- false when the message's lease had moved on before this result was recorded
    -- (a slow send overtaken by recovery): the message was not changed by this attempt.
    applied             boolean     NOT NULL DEFAULT true,
    ambiguous           boolean     NOT NULL DEFAULT false,
    error_code          text,
    error_message       text,
    provider_code       text,
    provider_message    text,
    provider_message_id text,
    http_status         integer,
    duration_ms         integer,
    next_retry_at       timestamptz,
    worker_id           text,
    started_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (outbound_message_id, attempt_no)
);

CREATE INDEX idx_outbound_attempt_retry_at ON outbound_attempt (next_retry_at)
    WHERE next_retry_at IS NOT NULL;
-- Success-rate window per provider (operator's circuit breaker).
CREATE INDEX idx_outbound_attempt_provider_created ON outbound_attempt (provider, created_at);

-- Same columns, same order, plain types: INSERT INTO outbound_message_archive SELECT * FROM
-- outbound_message works (the runbook's archiving step).
CREATE TABLE outbound_message_archive (
    id                  bigint      PRIMARY KEY,
    org_id              text        NOT NULL,
    dossier_id          text,
    channel             text        NOT NULL,
    status              text        NOT NULL,
    to_recipient        text        NOT NULL,
    template_code       text,
    template_language   text,
    template_params     jsonb       NOT NULL,
    subject             text,
    body                text,
    priority            smallint    NOT NULL,
    attempt_count       integer     NOT NULL,
    max_attempts        integer     NOT NULL,
    claim_count         integer     NOT NULL,
    error_code          text,
    error_message       text,
    correlation_id      text,
    idempotency_key     text,
    request_hash        text,
    provider            text,
    provider_message_id text,
    delivery_status     text,
    delivery_updated_at timestamptz,
    send_at             timestamptz,
    retry_at            timestamptz,
    lease_id            uuid,
    lease_owner         text,
    leased_until        timestamptz,
    sent_at             timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    due_at              timestamptz,
    archived_at         timestamptz DEFAULT now()
);

CREATE TABLE whatsapp_rate_limit (
    org_id              text        PRIMARY KEY,
    messages_sent_count integer     NOT NULL DEFAULT 0 CHECK (messages_sent_count >= 0),
    quota_limit         integer     NOT NULL DEFAULT 1000 CHECK (quota_limit >= 0),
    reset_at            timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    throttle_until      timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Keep outbound_message.retry_at equal to the latest attempt's next_retry_at, whoever edits it.
CREATE FUNCTION outbound_attempt_sync_retry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbound_message m
       SET retry_at = NEW.next_retry_at
     WHERE m.id = NEW.outbound_message_id
       AND m.retry_at IS DISTINCT FROM NEW.next_retry_at
       AND NOT EXISTS (SELECT 1 FROM outbound_attempt a
                        WHERE a.outbound_message_id = NEW.outbound_message_id
                          AND a.attempt_no > NEW.attempt_no);
    RETURN NULL;
END $$;

CREATE TRIGGER outbound_attempt_retry_sync
    AFTER UPDATE OF next_retry_at ON outbound_attempt
    FOR EACH ROW WHEN (OLD.next_retry_at IS DISTINCT FROM NEW.next_retry_at)
    EXECUTE FUNCTION outbound_attempt_sync_retry();

-- Wake workers when work becomes due now: new messages, and the runbook's manual re-queues.
-- Notifications with the same payload in one transaction are delivered once.
CREATE FUNCTION outbound_message_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbound_message_ready', NEW.channel);
    RETURN NULL;
END $$;

CREATE TRIGGER outbound_message_ready
    AFTER INSERT OR UPDATE ON outbound_message
    FOR EACH ROW WHEN (NEW.status = 'QUEUED' AND NEW.due_at <= now())
    EXECUTE FUNCTION outbound_message_notify();
