-- Three promises the runbook relies on: its scenario-6 query finds pg_stat_statements, archiving
-- messages keeps their attempt history, and giving an organisation more WhatsApp quota releases
-- the messages it was holding.

-- 1. pg_stat_statements (runbook scenario 6, "Check slow queries"). The server must preload the
-- library (shared_preload_libraries; the embedded server does); the extension must exist in this
-- database. A server that does not ship it, or a role that may not create it, leaves the
-- migration going without it: a NOTICE says so, and an administrator can create it later.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'pg_stat_statements not created (%): create it as a superuser', SQLERRM;
        END;
    ELSE
        RAISE NOTICE 'pg_stat_statements is not available on this server';
    END IF;
END $$;

-- 2. Attempt history outlives its message. outbound_attempt references outbound_message with
-- ON DELETE CASCADE, so the runbook's archiving step (INSERT INTO outbound_message_archive
-- SELECT * ...; DELETE FROM outbound_message ...) used to erase the attempts. Every deleted
-- attempt row, by a cascade or directly, is now copied here first. Same columns in the same
-- order as outbound_attempt, plain types, then archived_at.
CREATE TABLE outbound_attempt_archive (LIKE outbound_attempt);
ALTER TABLE outbound_attempt_archive ADD PRIMARY KEY (id);
ALTER TABLE outbound_attempt_archive ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX idx_outbound_attempt_archive_message ON outbound_attempt_archive (outbound_message_id, attempt_no);

CREATE FUNCTION outbound_attempt_archive_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbound_attempt_archive SELECT OLD.*, now() ON CONFLICT (id) DO NOTHING;
    RETURN OLD;
END $$;

CREATE TRIGGER outbound_attempt_archive
    BEFORE DELETE ON outbound_attempt
    FOR EACH ROW EXECUTE FUNCTION outbound_attempt_archive_deleted();

-- 3. Held WhatsApp messages follow the quota. A message refused by the ledger waits QUEUED with
-- retry_at at the window's reset (QUOTA_EXCEEDED) or the throttle's end (RATE_LIMIT_EXCEEDED).
-- When the organisation gets room sooner than that, by hand (UPDATE whatsapp_rate_limit SET
-- quota_limit = ..., a count or reset_at brought back, throttle_until cleared) or by the operator
-- (a QuotaPolicy raise writes quota_limit), its held messages become due at once (or when a
-- throttle still in force ends), and their latest attempt row says so. Updating them fires
-- outbound_message_ready, which wakes the workers.

-- Make the org's WhatsApp messages waiting with error_code `code` due at `due` (if later than
-- that); returns how many.
CREATE FUNCTION whatsapp_release_held(org text, code text, due timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    released integer;
BEGIN
    WITH moved AS (
        UPDATE outbound_message m
           SET retry_at = due
         WHERE m.org_id = org
           AND m.channel = 'WHATSAPP'
           AND m.status = 'QUEUED'
           AND m.retry_at > due
           AND m.error_code = code
        RETURNING m.id, m.claim_count
    ),
    attempts AS (
        UPDATE outbound_attempt a
           SET next_retry_at = due
          FROM moved
         WHERE a.outbound_message_id = moved.id
           AND a.attempt_no = moved.claim_count
           AND a.next_retry_at > due
    )
    SELECT count(*) INTO released FROM moved;
    RETURN released;
END $$;

-- Only the waiting WhatsApp messages: the partial index keeps the release cheap on a long queue.
CREATE INDEX idx_outbound_message_whatsapp_waiting ON outbound_message (org_id, retry_at)
    WHERE status = 'QUEUED' AND channel = 'WHATSAPP' AND retry_at IS NOT NULL;

-- TG_ARGV[0]: the error code of the messages to release.
CREATE FUNCTION whatsapp_rate_limit_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM whatsapp_release_held(NEW.org_id, TG_ARGV[0], GREATEST(now(), NEW.throttle_until));
    RETURN NULL;
END $$;

-- Neither fires on the workers' own bookkeeping: a reservation adds one (or restarts an elapsed
-- window, when the held messages are due anyway), a definite failure gives one back, a provider
-- throttle moves throttle_until later.
CREATE TRIGGER whatsapp_rate_limit_more_room
    AFTER UPDATE ON whatsapp_rate_limit
    FOR EACH ROW
    WHEN (NEW.quota_limit > OLD.quota_limit
          OR NEW.reset_at < OLD.reset_at
          OR (NEW.messages_sent_count < OLD.messages_sent_count - 1 AND NEW.reset_at = OLD.reset_at))
    EXECUTE FUNCTION whatsapp_rate_limit_release('QUOTA_EXCEEDED');

CREATE TRIGGER whatsapp_rate_limit_throttle_lifted
    AFTER UPDATE ON whatsapp_rate_limit
    FOR EACH ROW
    WHEN (OLD.throttle_until > now()
          AND (NEW.throttle_until IS NULL OR NEW.throttle_until < OLD.throttle_until))
    EXECUTE FUNCTION whatsapp_rate_limit_release('RATE_LIMIT_EXCEEDED');
