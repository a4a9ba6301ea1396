-- WhatsApp prioritization: urgent templates go first, and quota decisions are kept on the message.

-- Why a message changed route or waits (e.g. "re-routed WHATSAPP->SMS: quota 912/1000 above the
-- deferral threshold"); kept after the message is sent, unlike error_code.
ALTER TABLE outbound_message ADD COLUMN routing_note text;
ALTER TABLE outbound_message_archive ADD COLUMN routing_note text;

-- The archive keeps the message's column order (INSERT ... SELECT * must keep working):
-- archived_at moves after the new column.
ALTER TABLE outbound_message_archive DROP COLUMN archived_at;
ALTER TABLE outbound_message_archive ADD COLUMN archived_at timestamptz DEFAULT now();

-- Urgent WhatsApp templates (the organisation's policy, else the runbook's urgent_alert and
-- appointment_reminder) are claimed first, whatever path inserted them.
CREATE FUNCTION outbound_message_urgent_priority() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.template_code = ANY (COALESCE(
           (SELECT urgent_templates FROM whatsapp_quota_policy WHERE org_id = NEW.org_id),
           '{urgent_alert,appointment_reminder}'::text[])) THEN
        NEW.priority := GREATEST(NEW.priority, 100);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER outbound_message_urgent_priority
    BEFORE INSERT ON outbound_message
    FOR EACH ROW WHEN (NEW.channel = 'WHATSAPP' AND NEW.template_code IS NOT NULL)
    EXECUTE FUNCTION outbound_message_urgent_priority();
