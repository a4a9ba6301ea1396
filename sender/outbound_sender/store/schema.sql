CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public;

COMMENT ON EXTENSION pg_stat_statements IS 'track planning and execution statistics of all SQL statements executed';

CREATE TABLE public.outbound_message (
    id bigint NOT NULL,
    org_id text NOT NULL,
    dossier_id text,
    channel text NOT NULL,
    status text DEFAULT 'QUEUED'::text NOT NULL,
    to_recipient text NOT NULL,
    template_code text,
    template_language text,
    template_params jsonb DEFAULT '{}'::jsonb NOT NULL,
    subject text,
    body text,
    priority smallint DEFAULT 0 NOT NULL,
    attempt_count integer DEFAULT 0 NOT NULL,
    max_attempts integer DEFAULT 5 NOT NULL,
    claim_count integer DEFAULT 0 NOT NULL,
    error_code text,
    error_message text,
    correlation_id text,
    idempotency_key text,
    request_hash text,
    provider text,
    provider_message_id text,
    delivery_status text,
    delivery_updated_at timestamp with time zone,
    send_at timestamp with time zone,
    retry_at timestamp with time zone,
    lease_id uuid,
    lease_owner text,
    leased_until timestamp with time zone,
    sent_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    due_at timestamp with time zone GENERATED ALWAYS AS (GREATEST(updated_at, send_at, retry_at)) STORED,
    routing_note text,
    traceparent text,
    CONSTRAINT outbound_message_attempt_count_check CHECK ((attempt_count >= 0)),
    CONSTRAINT outbound_message_channel_check CHECK ((channel = ANY (ARRAY['SMS'::text, 'EMAIL'::text, 'WHATSAPP'::text]))),
    CONSTRAINT outbound_message_max_attempts_check CHECK ((max_attempts >= 0)),
    CONSTRAINT outbound_message_status_check CHECK ((status = ANY (ARRAY['QUEUED'::text, 'SENDING'::text, 'SENT'::text, 'FAILED'::text, 'CANCELLED'::text])))
);

COMMENT ON TABLE public.outbound_message IS 'Outbound queue: QUEUED -> SENDING -> SENT | QUEUED (retry) | FAILED (DLQ)';

CREATE FUNCTION public.ops_selected(status text, org text, channel text, error_codes text[], ids bigint[], updated_within interval, not_updated_for interval, templates text[], except_templates text[], held_only boolean) RETURNS SETOF public.outbound_message
    LANGUAGE sql STABLE
    AS $$
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

CREATE FUNCTION public.outbound_attempt_archive_deleted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO outbound_attempt_archive SELECT OLD.*, now() ON CONFLICT (id) DO NOTHING;
    RETURN OLD;
END $$;

CREATE FUNCTION public.outbound_attempt_sync_retry() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE outbound_message m
       SET retry_at = NEW.next_retry_at
     WHERE m.id = NEW.outbound_message_id
       AND m.retry_at IS DISTINCT FROM NEW.next_retry_at
       AND NOT EXISTS (SELECT 1 FROM outbound_attempt a
                        WHERE a.outbound_message_id = NEW.outbound_message_id
                          AND a.attempt_no > NEW.attempt_no);
    RETURN NULL;
END $$;

CREATE FUNCTION public.outbound_callback_payload(message_id bigint, status text, channel text, provider text, provider_code text, provider_message_id text, error_code text, error_message text, correlation_id text, dossier_id text, occurred_at timestamp with time zone, delivery_status text) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('message_id', message_id, 'status', status, 'channel', channel, 'provider', provider, 'provider_code', provider_code, 'provider_message_id', provider_message_id, 'error_code', error_code, 'error_message', error_message, 'correlation_id', correlation_id, 'dossier_id', dossier_id, 'occurred_at', occurred_at, 'delivery_status', delivery_status);

CREATE FUNCTION public.outbound_delivery_rank(status text) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE status WHEN 'SENT'::text THEN 1 WHEN 'DEFERRED'::text THEN 1 WHEN 'DELIVERED'::text THEN 2 WHEN 'UNDELIVERED'::text THEN 2 WHEN 'BOUNCED'::text THEN 2 WHEN 'READ'::text THEN 3 ELSE 0 END;

CREATE FUNCTION public.outbound_message_notify() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('outbound_message_ready', NEW.channel);
    RETURN NULL;
END $$;

CREATE FUNCTION public.outbound_message_urgent_priority() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.template_code = ANY (COALESCE(
           (SELECT urgent_templates FROM whatsapp_quota_policy WHERE org_id = NEW.org_id),
           '{urgent_alert,appointment_reminder}'::text[])) THEN
        NEW.priority := GREATEST(NEW.priority, 100);
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION public.runtime_control_notify() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('outbound_control', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE FUNCTION public.whatsapp_rate_limit_release() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM whatsapp_release_held(NEW.org_id, TG_ARGV[0], GREATEST(now(), NEW.throttle_until));
    RETURN NULL;
END $$;

CREATE FUNCTION public.whatsapp_release_held(org text, code text, due timestamp with time zone) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

CREATE TABLE public.api_key (
    id text NOT NULL,
    org_id text NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    secret_hash text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    revoked_at timestamp with time zone
);

CREATE TABLE public.ops_audit (
    id bigint NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    actor text NOT NULL,
    db_user text DEFAULT SESSION_USER NOT NULL,
    action text NOT NULL,
    reason text NOT NULL,
    params jsonb DEFAULT '{}'::jsonb NOT NULL,
    result jsonb DEFAULT '{}'::jsonb NOT NULL,
    matched bigint DEFAULT 0 NOT NULL,
    changed bigint DEFAULT 0 NOT NULL,
    batches integer DEFAULT 0 NOT NULL,
    outcome text DEFAULT 'RUNNING'::text NOT NULL,
    CONSTRAINT ops_audit_actor_check CHECK ((actor <> ''::text)),
    CONSTRAINT ops_audit_batches_check CHECK ((batches >= 0)),
    CONSTRAINT ops_audit_changed_check CHECK ((changed >= 0)),
    CONSTRAINT ops_audit_matched_check CHECK ((matched >= 0)),
    CONSTRAINT ops_audit_outcome_check CHECK ((outcome = ANY (ARRAY['RUNNING'::text, 'DONE'::text, 'INTERRUPTED'::text, 'FAILED'::text]))),
    CONSTRAINT ops_audit_reason_check CHECK ((btrim(reason) <> ''::text))
);

ALTER TABLE public.ops_audit ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.ops_audit_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.outbound_attempt (
    id bigint NOT NULL,
    outbound_message_id bigint NOT NULL,
    attempt_no integer NOT NULL,
    channel text NOT NULL,
    provider text,
    outcome text NOT NULL,
    applied boolean DEFAULT true NOT NULL,
    ambiguous boolean DEFAULT false NOT NULL,
    error_code text,
    error_message text,
    provider_code text,
    provider_message text,
    provider_message_id text,
    http_status integer,
    duration_ms integer,
    next_retry_at timestamp with time zone,
    worker_id text,
    started_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT outbound_attempt_outcome_check CHECK ((outcome = ANY (ARRAY['SENT'::text, 'RETRY'::text, 'FAILED'::text, 'DEFER'::text])))
);

CREATE TABLE public.outbound_attempt_archive (
    id bigint CONSTRAINT outbound_attempt_id_not_null NOT NULL,
    outbound_message_id bigint CONSTRAINT outbound_attempt_outbound_message_id_not_null NOT NULL,
    attempt_no integer CONSTRAINT outbound_attempt_attempt_no_not_null NOT NULL,
    channel text CONSTRAINT outbound_attempt_channel_not_null NOT NULL,
    provider text,
    outcome text CONSTRAINT outbound_attempt_outcome_not_null NOT NULL,
    applied boolean CONSTRAINT outbound_attempt_applied_not_null NOT NULL,
    ambiguous boolean CONSTRAINT outbound_attempt_ambiguous_not_null NOT NULL,
    error_code text,
    error_message text,
    provider_code text,
    provider_message text,
    provider_message_id text,
    http_status integer,
    duration_ms integer,
    next_retry_at timestamp with time zone,
    worker_id text,
    started_at timestamp with time zone,
    created_at timestamp with time zone CONSTRAINT outbound_attempt_created_at_not_null NOT NULL,
    archived_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE public.outbound_attempt ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.outbound_attempt_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.outbound_callback_endpoint (
    id bigint NOT NULL,
    org_id text NOT NULL,
    url text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    secret text NOT NULL,
    previous_secret text,
    previous_secret_until timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    rotated_at timestamp with time zone
);

ALTER TABLE public.outbound_callback_endpoint ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.outbound_callback_endpoint_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.outbound_callback_outbox (
    id bigint NOT NULL,
    endpoint_id bigint NOT NULL,
    org_id text NOT NULL,
    outbound_message_id bigint NOT NULL,
    event text NOT NULL,
    payload jsonb NOT NULL,
    status text DEFAULT 'PENDING'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    delivered_at timestamp with time zone,
    last_http_status integer,
    last_error text,
    CONSTRAINT outbound_callback_outbox_event_check CHECK ((event = ANY (ARRAY['SENT'::text, 'DELIVERED'::text, 'READ'::text, 'FAILED'::text]))),
    CONSTRAINT outbound_callback_outbox_status_check CHECK ((status = ANY (ARRAY['PENDING'::text, 'DELIVERED'::text, 'FAILED'::text])))
);

ALTER TABLE public.outbound_callback_outbox ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.outbound_callback_outbox_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.outbound_delivery_event (
    id bigint NOT NULL,
    provider text NOT NULL,
    provider_event_id text NOT NULL,
    outbound_message_id bigint,
    provider_message_id text,
    raw_status text NOT NULL,
    delivery_status text,
    error_code text,
    provider_code text,
    error_message text,
    occurred_at timestamp with time zone NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    resolved_ambiguous boolean DEFAULT false NOT NULL
);

COMMENT ON TABLE public.outbound_delivery_event IS 'Delivery receipts from provider webhooks, one per provider event';

ALTER TABLE public.outbound_delivery_event ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.outbound_delivery_event_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.outbound_message_archive (
    id bigint NOT NULL,
    org_id text NOT NULL,
    dossier_id text,
    channel text NOT NULL,
    status text NOT NULL,
    to_recipient text NOT NULL,
    template_code text,
    template_language text,
    template_params jsonb NOT NULL,
    subject text,
    body text,
    priority smallint NOT NULL,
    attempt_count integer NOT NULL,
    max_attempts integer NOT NULL,
    claim_count integer NOT NULL,
    error_code text,
    error_message text,
    correlation_id text,
    idempotency_key text,
    request_hash text,
    provider text,
    provider_message_id text,
    delivery_status text,
    delivery_updated_at timestamp with time zone,
    send_at timestamp with time zone,
    retry_at timestamp with time zone,
    lease_id uuid,
    lease_owner text,
    leased_until timestamp with time zone,
    sent_at timestamp with time zone,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    due_at timestamp with time zone,
    routing_note text,
    traceparent text,
    archived_at timestamp with time zone DEFAULT now()
);

ALTER TABLE public.outbound_message ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.outbound_message_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.provider_control (
    provider text NOT NULL,
    channel text NOT NULL,
    kind text NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    priority integer DEFAULT 100 NOT NULL,
    circuit_mode text DEFAULT 'Auto'::text NOT NULL,
    circuit_state text DEFAULT 'CLOSED'::text NOT NULL,
    circuit_since timestamp with time zone DEFAULT now() NOT NULL,
    circuit_reason text,
    half_open_probes_per_minute integer DEFAULT 6 NOT NULL,
    batch_size integer DEFAULT 10 NOT NULL,
    messages_per_second numeric,
    observed_generation bigint,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT provider_control_batch_size_check CHECK (((batch_size >= 1) AND (batch_size <= 1000))),
    CONSTRAINT provider_control_channel_check CHECK ((channel = ANY (ARRAY['SMS'::text, 'EMAIL'::text, 'WHATSAPP'::text]))),
    CONSTRAINT provider_control_circuit_mode_check CHECK ((circuit_mode = ANY (ARRAY['Auto'::text, 'ForceOpen'::text, 'ForceClosed'::text]))),
    CONSTRAINT provider_control_circuit_state_check CHECK ((circuit_state = ANY (ARRAY['CLOSED'::text, 'OPEN'::text, 'HALF_OPEN'::text]))),
    CONSTRAINT provider_control_half_open_probes_per_minute_check CHECK ((half_open_probes_per_minute >= 1)),
    CONSTRAINT provider_control_kind_check CHECK ((kind = ANY (ARRAY['twilio'::text, 'sendgrid'::text, 'whatsapp'::text, 'vonage'::text, 'ses'::text, 'sandbox'::text]))),
    CONSTRAINT provider_control_messages_per_second_check CHECK ((messages_per_second > (0)::numeric))
);

COMMENT ON COLUMN public.provider_control.messages_per_second IS 'Unused since migration 0013 (nothing reads or writes it); kept for rolling upgrades, dropped later.';

CREATE TABLE public.whatsapp_quota_policy (
    org_id text NOT NULL,
    daily_limit integer,
    reset_period_seconds integer DEFAULT 86400 NOT NULL,
    messages_per_second numeric DEFAULT 80 NOT NULL,
    pair_interval_seconds numeric DEFAULT 6 NOT NULL,
    alert_thresholds integer[] DEFAULT '{70,85,95}'::integer[] NOT NULL,
    urgent_templates text[] DEFAULT '{urgent_alert,appointment_reminder}'::text[] NOT NULL,
    defer_non_urgent_above_percent integer,
    fallback_channel text,
    observed_generation bigint,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT whatsapp_quota_policy_daily_limit_check CHECK ((daily_limit >= 0)),
    CONSTRAINT whatsapp_quota_policy_defer_non_urgent_above_percent_check CHECK (((defer_non_urgent_above_percent >= 1) AND (defer_non_urgent_above_percent <= 100))),
    CONSTRAINT whatsapp_quota_policy_fallback_channel_check CHECK ((fallback_channel = ANY (ARRAY['SMS'::text, 'EMAIL'::text]))),
    CONSTRAINT whatsapp_quota_policy_messages_per_second_check CHECK (((messages_per_second > (0)::numeric) AND (messages_per_second <= (1000)::numeric))),
    CONSTRAINT whatsapp_quota_policy_pair_interval_seconds_check CHECK ((pair_interval_seconds >= (0)::numeric)),
    CONSTRAINT whatsapp_quota_policy_reset_period_seconds_check CHECK ((reset_period_seconds > 0))
);

CREATE TABLE public.whatsapp_rate_limit (
    org_id text NOT NULL,
    messages_sent_count integer DEFAULT 0 NOT NULL,
    quota_limit integer DEFAULT 1000 NOT NULL,
    reset_at timestamp with time zone DEFAULT (now() + '24:00:00'::interval) NOT NULL,
    throttle_until timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT whatsapp_rate_limit_messages_sent_count_check CHECK ((messages_sent_count >= 0)),
    CONSTRAINT whatsapp_rate_limit_quota_limit_check CHECK ((quota_limit >= 0))
);

ALTER TABLE ONLY public.api_key
    ADD CONSTRAINT api_key_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.ops_audit
    ADD CONSTRAINT ops_audit_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.outbound_attempt_archive
    ADD CONSTRAINT outbound_attempt_archive_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.outbound_attempt
    ADD CONSTRAINT outbound_attempt_outbound_message_id_attempt_no_key UNIQUE (outbound_message_id, attempt_no);

ALTER TABLE ONLY public.outbound_attempt
    ADD CONSTRAINT outbound_attempt_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.outbound_callback_endpoint
    ADD CONSTRAINT outbound_callback_endpoint_org_id_url_key UNIQUE (org_id, url);

ALTER TABLE ONLY public.outbound_callback_endpoint
    ADD CONSTRAINT outbound_callback_endpoint_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.outbound_callback_outbox
    ADD CONSTRAINT outbound_callback_outbox_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.outbound_delivery_event
    ADD CONSTRAINT outbound_delivery_event_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.outbound_message_archive
    ADD CONSTRAINT outbound_message_archive_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.outbound_message
    ADD CONSTRAINT outbound_message_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.provider_control
    ADD CONSTRAINT provider_control_pkey PRIMARY KEY (provider);

ALTER TABLE ONLY public.outbound_delivery_event
    ADD CONSTRAINT uq_outbound_delivery_event UNIQUE (provider, provider_event_id);

ALTER TABLE ONLY public.whatsapp_quota_policy
    ADD CONSTRAINT whatsapp_quota_policy_pkey PRIMARY KEY (org_id);

ALTER TABLE ONLY public.whatsapp_rate_limit
    ADD CONSTRAINT whatsapp_rate_limit_pkey PRIMARY KEY (org_id);

CREATE INDEX idx_api_key_org ON public.api_key USING btree (org_id, created_at);

CREATE INDEX idx_ops_audit_started ON public.ops_audit USING btree (started_at DESC);

CREATE INDEX idx_outbound_attempt_archive_message ON public.outbound_attempt_archive USING btree (outbound_message_id, attempt_no);

CREATE INDEX idx_outbound_attempt_provider_created ON public.outbound_attempt USING brin (provider, created_at) WITH (autosummarize='on');

CREATE INDEX idx_outbound_attempt_retry_at ON public.outbound_attempt USING btree (next_retry_at) WHERE (next_retry_at IS NOT NULL);

CREATE INDEX idx_outbound_callback_outbox_due ON public.outbound_callback_outbox USING btree (next_attempt_at) WHERE (status = 'PENDING'::text);

CREATE INDEX idx_outbound_callback_outbox_message ON public.outbound_callback_outbox USING btree (outbound_message_id);

CREATE INDEX idx_outbound_delivery_event_message ON public.outbound_delivery_event USING btree (outbound_message_id, occurred_at) WHERE (outbound_message_id IS NOT NULL);

CREATE INDEX idx_outbound_message_channel_status ON public.outbound_message USING btree (channel, status);

CREATE INDEX idx_outbound_message_claim ON public.outbound_message USING btree (priority DESC, due_at) WHERE (status = 'QUEUED'::text);

CREATE INDEX idx_outbound_message_org_correlation ON public.outbound_message USING btree (org_id, correlation_id, created_at, id) WHERE (correlation_id IS NOT NULL);

CREATE INDEX idx_outbound_message_org_created ON public.outbound_message USING btree (org_id, created_at, id);

CREATE INDEX idx_outbound_message_org_dossier ON public.outbound_message USING btree (org_id, dossier_id, created_at, id) WHERE (dossier_id IS NOT NULL);

CREATE INDEX idx_outbound_message_org_status ON public.outbound_message USING btree (org_id, status, created_at, id) WHERE (status = ANY (ARRAY['QUEUED'::text, 'FAILED'::text, 'CANCELLED'::text]));

CREATE INDEX idx_outbound_message_org_template ON public.outbound_message USING btree (org_id, template_code, created_at, id) WHERE (template_code IS NOT NULL);

CREATE INDEX idx_outbound_message_provider_id ON public.outbound_message USING btree (provider_message_id) WHERE (provider_message_id IS NOT NULL);

CREATE INDEX idx_outbound_message_status_created ON public.outbound_message USING btree (status, created_at);

CREATE INDEX idx_outbound_message_whatsapp_waiting ON public.outbound_message USING btree (org_id, retry_at) WHERE ((status = 'QUEUED'::text) AND (channel = 'WHATSAPP'::text) AND (retry_at IS NOT NULL));

CREATE INDEX idx_provider_control_channel ON public.provider_control USING btree (channel, priority);

CREATE UNIQUE INDEX uq_outbound_message_idempotency ON public.outbound_message USING btree (org_id, idempotency_key) WHERE (idempotency_key IS NOT NULL);

CREATE TRIGGER outbound_attempt_archive BEFORE DELETE ON public.outbound_attempt FOR EACH ROW EXECUTE FUNCTION public.outbound_attempt_archive_deleted();

CREATE TRIGGER outbound_attempt_retry_sync AFTER UPDATE OF next_retry_at ON public.outbound_attempt FOR EACH ROW WHEN ((old.next_retry_at IS DISTINCT FROM new.next_retry_at)) EXECUTE FUNCTION public.outbound_attempt_sync_retry();

CREATE TRIGGER outbound_message_ready AFTER INSERT OR UPDATE ON public.outbound_message FOR EACH ROW WHEN (((new.status = 'QUEUED'::text) AND (new.due_at <= now()))) EXECUTE FUNCTION public.outbound_message_notify();

CREATE TRIGGER outbound_message_urgent_priority BEFORE INSERT ON public.outbound_message FOR EACH ROW WHEN (((new.channel = 'WHATSAPP'::text) AND (new.template_code IS NOT NULL))) EXECUTE FUNCTION public.outbound_message_urgent_priority();

CREATE TRIGGER provider_control_changed AFTER INSERT OR DELETE OR UPDATE ON public.provider_control FOR EACH STATEMENT EXECUTE FUNCTION public.runtime_control_notify();

CREATE TRIGGER whatsapp_quota_policy_changed AFTER INSERT OR DELETE OR UPDATE ON public.whatsapp_quota_policy FOR EACH STATEMENT EXECUTE FUNCTION public.runtime_control_notify();

CREATE TRIGGER whatsapp_rate_limit_more_room AFTER UPDATE ON public.whatsapp_rate_limit FOR EACH ROW WHEN (((new.quota_limit > old.quota_limit) OR (new.reset_at < old.reset_at) OR ((new.messages_sent_count < (old.messages_sent_count - 1)) AND (new.reset_at = old.reset_at)))) EXECUTE FUNCTION public.whatsapp_rate_limit_release('QUOTA_EXCEEDED');

CREATE TRIGGER whatsapp_rate_limit_throttle_lifted AFTER UPDATE ON public.whatsapp_rate_limit FOR EACH ROW WHEN (((old.throttle_until > now()) AND ((new.throttle_until IS NULL) OR (new.throttle_until < old.throttle_until)))) EXECUTE FUNCTION public.whatsapp_rate_limit_release('RATE_LIMIT_EXCEEDED');

ALTER TABLE ONLY public.outbound_attempt
    ADD CONSTRAINT outbound_attempt_outbound_message_id_fkey FOREIGN KEY (outbound_message_id) REFERENCES public.outbound_message(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.outbound_callback_outbox
    ADD CONSTRAINT outbound_callback_outbox_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES public.outbound_callback_endpoint(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.outbound_delivery_event
    ADD CONSTRAINT outbound_delivery_event_outbound_message_id_fkey FOREIGN KEY (outbound_message_id) REFERENCES public.outbound_message(id) ON DELETE SET NULL;
