-- The reference lifecycle's own tables (L_ref), created by the bench in a database of their own.
-- A deliberately small model of a sender: one message table with a single partial index that the
-- claim walks, one attempt table indexed by message. It is the yardstick for how much database
-- work per message our own schema adds. Each `-- name:` block is one step; bench/reference.py
-- runs them.

-- name: reference_schema
CREATE TABLE ref_message (
    id              bigserial   PRIMARY KEY,
    channel         text        NOT NULL,
    recipient       text        NOT NULL,
    body            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'QUEUED'
                    CONSTRAINT ref_message_status CHECK (status IN ('QUEUED', 'SENDING', 'SENT', 'FAILED')),
    attempts        int         NOT NULL DEFAULT 0,
    max_attempts    int         NOT NULL DEFAULT 5,
    due_at          timestamptz NOT NULL DEFAULT now(),
    lease_owner     int,
    leased_at       timestamptz,
    provider_ref    text,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- What the claim walks: queued rows only, oldest due first.
CREATE INDEX ref_message_due ON ref_message (due_at, id) WHERE status = 'QUEUED';
CREATE TABLE ref_attempt (
    id              bigserial   PRIMARY KEY,
    message_id      bigint      NOT NULL REFERENCES ref_message (id),
    attempt_no      int         NOT NULL,
    outcome         text        NOT NULL,
    http_status     int,
    provider_ref    text,
    error           text,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL
);
CREATE INDEX ref_attempt_message ON ref_attempt (message_id);

-- name: reference_load
-- $1 due messages with the body $2 (the same text our own L sends), due a little in the past.
INSERT INTO ref_message (channel, recipient, body, due_at)
SELECT 'SMS',
       '+1555' || to_char(n, 'FM0000000'),
       $2::text,
       now() - interval '10 minutes' + n * interval '1 microsecond'
  FROM generate_series(1, $1::int) AS n;

-- name: reference_counts
-- Messages the lifecycle finished (one attempt row each), and messages still waiting.
SELECT (SELECT count(*) FROM ref_attempt) AS completed,
       (SELECT count(*) FROM ref_message WHERE status = 'SENT') AS sent,
       (SELECT count(*) FROM ref_message WHERE status = 'QUEUED') AS queued;
