-- Fewer index entries per message on the hot path (docs/performance.md, "Database cost per message").
-- Every status change of outbound_message is a non-HOT update (status is in the runbook's two named
-- indexes), so each claim and each completion writes one new entry into every index whose predicate
-- the new row version matches. Three indexes paid that price without needing to:

-- The API's status filter. QUEUED, FAILED and CANCELLED rows are the ones a per-organisation status
-- list needs an index for; SENDING and SENT rows, which every message passes through, no longer get
-- entries. A SENT list reads idx_outbound_message_org_created (most rows are SENT), a SENDING list
-- one of the runbook's two status indexes (SENDING rows are only those in flight).
DROP INDEX idx_outbound_message_org_status;
CREATE INDEX idx_outbound_message_org_status ON outbound_message (org_id, status, created_at, id)
    WHERE status IN ('QUEUED', 'FAILED', 'CANCELLED');

-- Lease recovery and the SENDING gauge read the SENDING rows (those in flight) through the runbook's
-- idx_outbound_message_status_created instead of an index of their own, written at every claim.
DROP INDEX idx_outbound_message_lease;

-- The operator's per-provider call counts read recent attempts only: a BRIN range index on the
-- append-only attempt table finds them (summarized as each range fills) at almost no cost per insert.
DROP INDEX idx_outbound_attempt_provider_created;
CREATE INDEX idx_outbound_attempt_provider_created ON outbound_attempt USING brin (provider, created_at)
    WITH (autosummarize = on);
