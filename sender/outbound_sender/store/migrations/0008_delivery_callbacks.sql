-- Delivery callbacks: an organisation's registered URLs, and the durable outbox of the status
-- changes still to be POSTed to them (docs/callbacks.md).

-- One row per registered URL. The signing secret is kept as is (an HMAC needs the key itself).
-- During a rotation the previous secret signs too, until previous_secret_until.
CREATE TABLE outbound_callback_endpoint (
    id                    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id                text        NOT NULL,
    url                   text        NOT NULL,
    description           text        NOT NULL DEFAULT '',
    secret                text        NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    rotated_at            timestamptz,
    UNIQUE (org_id, url)
);

-- The outbox: one row per (endpoint, status change), written by the statement that changed the
-- status, only for organisations with an endpoint. No foreign key to outbound_message: archiving
-- a message does not drop its pending callbacks. Deleting an endpoint drops its own.
CREATE TABLE outbound_callback_outbox (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id         bigint      NOT NULL REFERENCES outbound_callback_endpoint (id) ON DELETE CASCADE,
    org_id              text        NOT NULL,
    outbound_message_id bigint      NOT NULL,
    event               text        NOT NULL CHECK (event IN ('SENT', 'DELIVERED', 'READ', 'FAILED')),
    payload             jsonb       NOT NULL,
    status              text        NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts            int         NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    delivered_at        timestamptz,
    last_http_status    int,
    last_error          text
);

-- The message part of a callback's body (docs/callbacks.md), one shape for every statement that
-- writes the outbox.
CREATE FUNCTION outbound_callback_payload(
    message_id bigint, status text, channel text, provider text, provider_code text,
    provider_message_id text, error_code text, error_message text, correlation_id text,
    dossier_id text, occurred_at timestamptz, delivery_status text
) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object(
        'message_id', message_id, 'status', status, 'channel', channel, 'provider', provider,
        'provider_code', provider_code, 'provider_message_id', provider_message_id,
        'error_code', error_code, 'error_message', error_message, 'correlation_id', correlation_id,
        'dossier_id', dossier_id, 'occurred_at', occurred_at, 'delivery_status', delivery_status);

-- The dispatcher's claim: due PENDING rows, oldest due first.
CREATE INDEX idx_outbound_callback_outbox_due ON outbound_callback_outbox (next_attempt_at) WHERE status = 'PENDING';
-- A message's callbacks (support: what was sent to the client about message N).
CREATE INDEX idx_outbound_callback_outbox_message ON outbound_callback_outbox (outbound_message_id);
