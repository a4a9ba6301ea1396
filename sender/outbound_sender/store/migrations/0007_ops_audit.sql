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

-- The messages an ops command selects: one status plus the filters given (NULL: not filtered).
-- Templates excluded work as the runbook's NOT IN: a message without a template is not selected.
-- held_only: only those waiting for a later retry_at. A plain SQL function, so the planner inlines
-- it into the count and into each batch's keyset query (the primary key still walks the ids).
CREATE FUNCTION ops_selected(
    status text, org text, channel text, error_codes text[], ids bigint[], updated_within interval,
    not_updated_for interval, templates text[], except_templates text[], held_only boolean
) RETURNS SETOF outbound_message LANGUAGE sql STABLE AS $$
    SELECT *
      FROM outbound_message m
     WHERE m.status = ops_selected.status
       AND (ops_selected.org IS NULL OR m.org_id = ops_selected.org)
       AND (ops_selected.channel IS NULL OR m.channel = ops_selected.channel)
       AND (error_codes IS NULL OR m.error_code = ANY(error_codes))
       AND (ids IS NULL OR m.id = ANY(ids))
       AND (updated_within IS NULL OR m.updated_at > now() - updated_within)
       AND (not_updated_for IS NULL OR m.updated_at < now() - not_updated_for)
       AND (templates IS NULL OR m.template_code = ANY(templates))
       AND (except_templates IS NULL OR m.template_code <> ALL(except_templates))
       AND (NOT held_only OR m.retry_at > now())
$$;
