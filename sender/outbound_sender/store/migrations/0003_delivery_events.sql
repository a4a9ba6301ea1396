-- Delivery receipts from the providers' webhooks (Twilio status callbacks, SendGrid Event Webhook,
-- WhatsApp status webhooks). One row per provider event, de-duplicated by the provider's event id,
-- so a webhook retried by the provider is recorded once. outbound_message.delivery_status holds the
-- furthest state reached; the rank below keeps late or out-of-order receipts from moving it back.

CREATE FUNCTION outbound_delivery_rank(status text) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE status
               WHEN 'SENT' THEN 1
               WHEN 'DEFERRED' THEN 1
               WHEN 'DELIVERED' THEN 2
               WHEN 'UNDELIVERED' THEN 2
               WHEN 'BOUNCED' THEN 2
               WHEN 'READ' THEN 3
               ELSE 0
           END;

CREATE TABLE outbound_delivery_event (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider            text        NOT NULL,
    provider_event_id   text        NOT NULL,
    -- NULL when no message matched (an event for a message sent by another system, or archived).
    outbound_message_id bigint      REFERENCES outbound_message (id) ON DELETE SET NULL,
    provider_message_id text,
    raw_status          text        NOT NULL,
    -- Normalized (SENT, DEFERRED, DELIVERED, UNDELIVERED, BOUNCED, READ); NULL for events that do
    -- not change delivery state (an unsubscribe or spam report after delivery).
    delivery_status     text,
    error_code          text,
    provider_code       text,
    error_message       text,
    occurred_at         timestamptz NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now(),
    -- A receipt that proved an ambiguous send had been accepted, and settled the message as SENT.
    resolved_ambiguous  boolean     NOT NULL DEFAULT false,
    CONSTRAINT uq_outbound_delivery_event UNIQUE (provider, provider_event_id)
);

COMMENT ON TABLE outbound_delivery_event IS 'Delivery receipts from provider webhooks, one per provider event';

-- A message's receipts (trace, `outbound show`).
CREATE INDEX idx_outbound_delivery_event_message ON outbound_delivery_event (outbound_message_id, occurred_at)
    WHERE outbound_message_id IS NOT NULL;
