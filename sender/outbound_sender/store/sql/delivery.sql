-- Named queries of the delivery webhooks: recording receipts, looking them up.

-- name: record_delivery_events
-- Record a batch of receipts and move each message's delivery_status forward, never back.
-- $1..$11 are parallel arrays (one element per event). An event finds its message by our id
-- (carried in the send: StatusCallback query, custom_args, biz_opaque_callback_data; primary key)
-- or else by the provider's message id (idx_outbound_message_provider_id), and only a message of
-- the event's channel that its provider was asked to send (the message's provider, one of its
-- attempts' providers, or none recorded yet: the first send may still be in flight). Duplicates
-- (same provider + event id) are dropped by uq_outbound_delivery_event.
-- A positive receipt (SENT or later, not a failure) for a message waiting to retry after an
-- ambiguous send proves the provider took that send: the message is settled as SENT instead of
-- being sent twice. Only a receipt of the attempt still open (the last, ambiguous one) does so: from
-- the provider that attempt called (any of the channel's when a lost lease left it unknown), and
-- not carrying a provider message id that an earlier attempt got.
WITH e AS (
    SELECT *
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                  $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[])
           AS e(provider, event_id, raw_status, delivery_status, provider_message_id, outbound_id,
                occurred_at, error_code, provider_code, error_message, channel)
),
matched AS (
    SELECT e.*, msg.id AS message_id,
           COALESCE(e.delivery_status IN ('SENT', 'DELIVERED', 'READ'), false)
           AND msg.status = 'QUEUED'
           AND COALESCE(msg.open_ambiguous, false)
           AND COALESCE(msg.open_provider = e.provider, true)
           AND NOT EXISTS (SELECT 1 FROM outbound_attempt earlier
                            WHERE earlier.outbound_message_id = msg.id
                              AND earlier.attempt_no <> msg.claim_count
                              AND earlier.provider_message_id = e.provider_message_id) AS resolves
      FROM e
      LEFT JOIN LATERAL (
          SELECT m.id, m.status, m.claim_count, open_att.provider AS open_provider, open_att.ambiguous AS open_ambiguous
            FROM outbound_message m
            LEFT JOIN outbound_attempt open_att
                   ON open_att.outbound_message_id = m.id AND open_att.attempt_no = m.claim_count
           WHERE (m.id = e.outbound_id
                  OR (e.outbound_id IS NULL AND m.provider_message_id = e.provider_message_id))
             AND m.channel = e.channel
             AND (m.provider IS NULL OR m.provider = e.provider
                  OR EXISTS (SELECT 1 FROM outbound_attempt a
                              WHERE a.outbound_message_id = m.id AND a.provider = e.provider))
           ORDER BY m.id DESC
           LIMIT 1
      ) msg ON true
),
ins AS (
    INSERT INTO outbound_delivery_event
           (provider, provider_event_id, outbound_message_id, provider_message_id, raw_status,
            delivery_status, error_code, provider_code, error_message, occurred_at, resolved_ambiguous)
    SELECT provider, event_id, message_id, provider_message_id, raw_status, delivery_status,
           error_code, provider_code, error_message, occurred_at, COALESCE(resolves, false)
      FROM matched
        ON CONFLICT (provider, provider_event_id) DO NOTHING
    RETURNING outbound_message_id, delivery_status
),
-- Per message, the furthest state of this batch. Built from every event, not only the newly
-- inserted ones: a duplicate can never move a message further than its original did.
best AS (
    SELECT DISTINCT ON (message_id) *
      FROM matched
     WHERE message_id IS NOT NULL AND delivery_status IS NOT NULL
     ORDER BY message_id, resolves DESC, outbound_delivery_rank(delivery_status) DESC, occurred_at DESC
),
upd AS (
    UPDATE outbound_message m
       SET delivery_status = CASE WHEN outbound_delivery_rank(b.delivery_status)
                                       > outbound_delivery_rank(m.delivery_status)
                                  THEN b.delivery_status ELSE m.delivery_status END,
           delivery_updated_at = CASE WHEN outbound_delivery_rank(b.delivery_status)
                                           > outbound_delivery_rank(m.delivery_status)
                                      THEN b.occurred_at ELSE m.delivery_updated_at END,
           status = CASE WHEN b.resolves THEN 'SENT' ELSE m.status END,
           sent_at = CASE WHEN b.resolves THEN now() ELSE m.sent_at END,
           retry_at = CASE WHEN b.resolves THEN NULL ELSE m.retry_at END,
           error_code = CASE WHEN b.resolves THEN NULL ELSE m.error_code END,
           error_message = CASE WHEN b.resolves THEN NULL ELSE m.error_message END,
           -- Settled: the open attempt's provider and id. Otherwise the id fills a gap only.
           provider = CASE WHEN b.resolves THEN b.provider ELSE m.provider END,
           provider_message_id = CASE WHEN b.resolves
                                      THEN COALESCE(b.provider_message_id, m.provider_message_id)
                                      ELSE COALESCE(m.provider_message_id, b.provider_message_id) END,
           updated_at = CASE WHEN b.resolves THEN now() ELSE m.updated_at END
      FROM best b
     WHERE m.id = b.message_id
       AND (outbound_delivery_rank(b.delivery_status) > outbound_delivery_rank(m.delivery_status)
            OR (b.resolves AND m.status = 'QUEUED'))
    RETURNING m.id, b.resolves AND m.status = 'SENT' AS resolved, m.org_id, m.channel, m.provider,
              m.provider_message_id, m.correlation_id, m.dossier_id, m.delivery_status,
              b.delivery_status AS event_status, b.provider_code, b.error_code AS event_error_code,
              b.error_message AS event_error_message, b.occurred_at
),
-- Delivery callbacks (docs/callbacks.md): a receipt that moved a message to DELIVERED, READ,
-- UNDELIVERED or BOUNCED (a FAILED callback, delivery_status saying which), or settled an ambiguous send as SENT, gets one outbox row per endpoint of the message's
-- organisation; organisations without one get none.
cb AS (
    INSERT INTO outbound_callback_outbox (endpoint_id, org_id, outbound_message_id, event, payload)
    SELECT e.id, u.org_id, u.id, x.event,
           outbound_callback_payload(u.id, x.event, u.channel, u.provider, u.provider_code,
                                     u.provider_message_id, u.event_error_code, u.event_error_message,
                                     u.correlation_id, u.dossier_id, u.occurred_at, u.event_status)
      FROM upd u
      CROSS JOIN LATERAL (
          SELECT COALESCE(CASE WHEN u.delivery_status = u.event_status
                               THEN CASE u.event_status WHEN 'DELIVERED' THEN 'DELIVERED' WHEN 'READ' THEN 'READ'
                                                        WHEN 'UNDELIVERED' THEN 'FAILED' WHEN 'BOUNCED' THEN 'FAILED'
                                    END
                          END,
                          CASE WHEN u.resolved THEN 'SENT' END) AS event
      ) x
      JOIN outbound_callback_endpoint e ON e.org_id = u.org_id
     WHERE x.event IS NOT NULL
)
SELECT (SELECT count(*) FROM e)::int AS received,
       (SELECT count(*) FROM ins)::int AS recorded,
       (SELECT count(*) FROM ins WHERE outbound_message_id IS NULL)::int AS unmatched,
       (SELECT count(*) FROM upd)::int AS advanced,
       (SELECT count(*) FROM upd WHERE resolved)::int AS resolved_ambiguous,
       -- The new receipts of known messages, as parallel arrays (both in the same total order):
       -- the receipts' spans join each message's trace (docs/tracing.md).
       COALESCE(r.ids, '{}') AS receipt_message_ids,
       COALESCE(r.statuses, '{}') AS receipt_statuses
  FROM (SELECT array_agg(outbound_message_id ORDER BY outbound_message_id, delivery_status) AS ids,
               array_agg(delivery_status ORDER BY outbound_message_id, delivery_status) AS statuses
          FROM ins
         WHERE outbound_message_id IS NOT NULL) r;

-- name: message_traceparents
-- The stored trace context of messages that just got receipts (tracing on only). Uses the primary key.
SELECT id, traceparent
  FROM outbound_message
 WHERE id = ANY($1::bigint[])
   AND traceparent IS NOT NULL;

-- name: get_delivery_events
SELECT * FROM outbound_delivery_event WHERE outbound_message_id = $1 ORDER BY occurred_at, id;

-- name: accepted_receipt
-- Before a retry is sent: a positive receipt (SENT, DELIVERED or READ) of the attempt left open
-- proves that send was accepted (an ambiguous timeout, or a crash before the result was recorded).
-- The open attempt is the last one recorded; it must be ambiguous, the receipt must come from the
-- provider it called (any, when a lost lease left that unknown) and must not carry a provider
-- message id that an earlier attempt got. No attempt recorded at all: any positive receipt.
-- Uses idx_outbound_delivery_event_message and the (outbound_message_id, attempt_no) key.
WITH open_att AS (
    SELECT attempt_no, provider, ambiguous
      FROM outbound_attempt
     WHERE outbound_message_id = $1
     ORDER BY attempt_no DESC
     LIMIT 1
)
SELECT d.provider, d.provider_message_id
  FROM outbound_delivery_event d
  LEFT JOIN open_att ON true
 WHERE d.outbound_message_id = $1
   AND d.delivery_status IN ('SENT', 'DELIVERED', 'READ')
   AND COALESCE(open_att.ambiguous, true)
   AND COALESCE(open_att.provider = d.provider, true)
   AND NOT EXISTS (SELECT 1 FROM outbound_attempt earlier
                    WHERE earlier.outbound_message_id = $1
                      AND earlier.attempt_no < open_att.attempt_no
                      AND earlier.provider_message_id = d.provider_message_id)
 ORDER BY d.occurred_at, d.id
 LIMIT 1;
