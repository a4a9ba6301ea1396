-- What the operator's timer measures. Both queries are index-only or index range scans.

-- name: provider_calls
-- Provider calls of one ChannelProvider since $2 (the window start, or the half-open start).
-- Index: idx_outbound_attempt_provider_created (provider, created_at). DEFER is not a provider
-- call (quota deferral); applied = false rows were superseded by another result of the same claim.
SELECT count(*) FILTER (WHERE outcome IN ('SENT', 'RETRY', 'FAILED')) AS total,
       count(*) FILTER (WHERE outcome IN ('RETRY', 'FAILED'))         AS failures
  FROM outbound_attempt
 WHERE provider = $1
   AND created_at >= $2
   AND applied;

-- name: channel_load
-- Queue depth and in-flight sends of one channel. Index: idx_outbound_message_channel_status.
SELECT count(*) FILTER (WHERE status = 'QUEUED')  AS depth,
       count(*) FILTER (WHERE status = 'SENDING') AS in_flight
  FROM outbound_message
 WHERE channel = $1
   AND status IN ('QUEUED', 'SENDING');
