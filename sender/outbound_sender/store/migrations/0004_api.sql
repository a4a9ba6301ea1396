-- The HTTP API (OutboundMessageService): API keys per organisation, and the indexes behind the
-- message list's filters (store/sql/api.sql, tests/integration/api/test_api_query_plans.py).

-- An API key is "obk_<id>_<secret>". Only the SHA-256 of the secret is stored: the secret is 256 random
-- bits, so a fast hash is as safe as a slow one and keeps authentication off the CPU's critical path.
CREATE TABLE api_key (
    id          text        PRIMARY KEY,
    org_id      text        NOT NULL,
    name        text        NOT NULL DEFAULT '',
    secret_hash text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX idx_api_key_org ON api_key (org_id, created_at);

-- Every list query is scoped by organisation and ordered newest first by (created_at, id), so each
-- index ends in (created_at, id): a filter, a time range and the keyset cursor are one range scan.
-- Channel has three values and needs no index of its own (the org index finds matches densely).
CREATE INDEX idx_outbound_message_org_created ON outbound_message (org_id, created_at, id);
CREATE INDEX idx_outbound_message_org_status ON outbound_message (org_id, status, created_at, id);
CREATE INDEX idx_outbound_message_org_dossier ON outbound_message (org_id, dossier_id, created_at, id)
    WHERE dossier_id IS NOT NULL;
CREATE INDEX idx_outbound_message_org_correlation ON outbound_message (org_id, correlation_id, created_at, id)
    WHERE correlation_id IS NOT NULL;
CREATE INDEX idx_outbound_message_org_template ON outbound_message (org_id, template_code, created_at, id)
    WHERE template_code IS NOT NULL;
