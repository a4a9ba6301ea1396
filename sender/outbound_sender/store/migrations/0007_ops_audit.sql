-- The record of every change made with the `outbound` ops commands (dead-letter retry / discard,
-- archive, reschedule, cancel, quota, throttle): who, when, what, why and how many. A row is
-- written when the action starts and its counts move with every batch it commits, so an action
-- that is interrupted still says how far it got. `outbound audit` lists it. Dry runs write nothing.
CREATE TABLE ops_audit (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- The person (--actor, OUTBOUND_ACTOR, else the login name and host) and the database role.
    actor       text        NOT NULL CHECK (actor <> ''),
    db_user     text        NOT NULL DEFAULT session_user,
    action      text        NOT NULL,
    reason      text        NOT NULL CHECK (btrim(reason) <> ''),
    -- The selection and the new values, as given on the command line.
    params      jsonb       NOT NULL DEFAULT '{}',
    -- What the action found beside the rows it changed (values before and after, messages released).
    result      jsonb       NOT NULL DEFAULT '{}',
    matched     bigint      NOT NULL DEFAULT 0 CHECK (matched >= 0),
    changed     bigint      NOT NULL DEFAULT 0 CHECK (changed >= 0),
    batches     integer     NOT NULL DEFAULT 0 CHECK (batches >= 0),
    outcome     text        NOT NULL DEFAULT 'RUNNING'
                            CHECK (outcome IN ('RUNNING', 'DONE', 'INTERRUPTED', 'FAILED'))
);

CREATE INDEX idx_ops_audit_started ON ops_audit (started_at DESC);
