-- Tracing (docs/tracing.md): the W3C traceparent of the API request that created a message, so the
-- worker's send and the delivery receipts join that request's trace. NULL when tracing is off or the
-- message came another way. Nullable, no default, no index: adding it rewrites nothing, and the
-- claim reads it only as one more column of the rows it already returns.
ALTER TABLE outbound_message ADD COLUMN traceparent text;
ALTER TABLE outbound_message_archive ADD COLUMN traceparent text;

-- The archive keeps the message's column order (the runbook's INSERT ... SELECT * must keep
-- working): archived_at moves after the new column, keeping the archived rows' values.
ALTER TABLE outbound_message_archive RENAME COLUMN archived_at TO archived_at_before_0009;
ALTER TABLE outbound_message_archive ADD COLUMN archived_at timestamptz DEFAULT now();
UPDATE outbound_message_archive SET archived_at = archived_at_before_0009;
ALTER TABLE outbound_message_archive DROP COLUMN archived_at_before_0009;
