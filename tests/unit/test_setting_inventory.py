"""Every environment variable the product reads names the test that shows its effect.

The variables are found in the settings models themselves: every pydantic-settings model of the
`outbound_sender` and `outbound_operator` packages (found by importing every module and walking the
subclasses of BaseSettings), each field under its environment prefix, and the `outbound` options
that may come from an environment variable (OUTBOUND_ACTOR). A model that only serves as the base of
models with their own prefix (AccountSettings) is not read under its own names.

Each variable names one test (by node id) and how far that test follows it:

- PROCESS: a running process (`outbound api|worker|callbacks|run|sandbox`, the operator, or the
  worker Deployment the operator rendered) behaves differently because of the variable;
- UNIT: the unit that reads the setting (the worker's loops, the app served by uvicorn or reached
  through httpx's ASGI transport, a provider client, the dispatcher) behaves differently because of
  the field's value.

A test that only checks the value was parsed, validated or rendered into a manifest is not evidence:
such variables are listed in OPEN_GAPS with the reason, so that the list can only shrink on purpose.
A new setting fails this test until it names a test or a gap; a renamed or removed test fails it too.
The other way round, a variable that README, docs/, the chart or the operator's rendering name but
nothing reads fails it as well.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
import yaml
from pydantic_settings import BaseSettings

import outbound_operator
import outbound_sender
from outbound_operator.reconcile.spec import ChannelProviderSpec
from outbound_operator.reconcile.workload import operator_env_names
from outbound_operator.settings import OperatorSettings
from outbound_sender import cli
from tests.unit.operator.test_field_inventory import functions_in

ROOT = Path(__file__).resolve().parents[2]
PROCESS, UNIT = "process", "unit"

CLI = "tests/integration/test_cli.py"
ENTRY = "tests/integration/test_entry_points.py"
OPS = "tests/integration/api/test_ops.py"
HTTP_LIMITS = "tests/integration/api/test_http_limits.py"
API_ENV = "tests/integration/api/test_settings_from_environment.py"
WEBHOOKS = "tests/unit/test_webhook_settings.py"
PREFIX_AND_LIMIT = f"{WEBHOOKS}::test_the_path_prefix_and_body_limit_come_from_the_environment"
HANDSHAKE = f"{WEBHOOKS}::test_whatsapps_verification_handshake_answers_the_verify_token_from_the_environment"
SANDBOXES = (
    "tests/integration/test_sandbox_settings.py::"
    "test_each_provider_sandbox_listens_on_the_host_and_port_from_the_environment"
)
ACCOUNTS = "tests/unit/providers/test_accounts_from_environment.py"
TWILIO_REQ = f"{ACCOUNTS}::test_twilio_sends_to_its_base_url_as_its_account_with_or_without_status_callbacks"
SENDGRID_REQ = f"{ACCOUNTS}::test_sendgrid_sends_to_its_base_url_with_its_api_key"
WHATSAPP_REQ = f"{ACCOUNTS}::test_whatsapp_sends_to_its_base_url_with_its_token_and_default_language"
VONAGE_REQ = f"{ACCOUNTS}::test_vonage_sends_to_its_base_url_as_the_account_its_files_name"
SES_REQ = f"{ACCOUNTS}::test_ses_sends_to_its_base_url_signed_with_the_keys_its_files_name"
SILENT = f"{ACCOUNTS}::test_a_send_without_answer_ends_at_the_read_timeout_and_waits_the_ambiguous_retry"
APP_SECRET = f"{WEBHOOKS}::test_whatsapp_receipts_are_verified_with_the_app_secret_from_the_environment"
EVENT_KEY = f"{WEBHOOKS}::test_sendgrid_events_are_verified_with_the_public_key_from_the_environment"
CALLBACK_RETRY = (
    "tests/integration/callbacks/test_settings_from_environment.py::"
    "test_the_retry_delay_follows_the_retry_settings_from_the_environment"
)
RENDERED = "tests/unit/operator/test_rendered_settings_effect.py"
OPERATOR_LOGS = (
    "tests/unit/operator/test_log_settings.py::test_the_operators_lines_take_the_format_and_level_from_the_environment"
)
DAMPING = "tests/unit/operator/test_scaling.py::test_the_scaling_damping_comes_from_the_environment"
AUTH = "tests/integration/api/test_auth_throttle.py"
CALLBACKS = "tests/integration/callbacks/test_callbacks.py"
EFFECT = "tests/unit/worker/test_settings_effect.py"  # the worker built from the environment, on the fake gateway
SWITCHES = f"{EFFECT}::test_each_channel_switch_from_the_environment_keeps_its_channel_queued"
CLAIMS = f"{EFFECT}::test_the_channels_id_and_lease_from_the_environment_are_what_the_claims_carry"
RETRY = f"{EFFECT}::test_the_retry_delay_follows_the_retry_settings_from_the_environment"
SENTRY = "tests/unit/observability/test_sentry.py"
K_RUNTIME = "tests/kube/operator/test_runtime_control.py"
K_PODS = "tests/kube/operator/test_worker_pods.py"

RUN = f"{CLI}::test_outbound_run_sends_a_demo_message_and_enqueue_waits_for_sent"
# The rendered worker talks to the sandbox at spec.endpoint (OUTBOUND_PROVIDER_SANDBOX_URL).
K_DISABLE = f"{K_RUNTIME}::test_disable_leaves_messages_queued_and_enable_sends_them"
K_IMAGE = "tests/kube/operator/test_image.py::test_operator_image_logs_in_and_creates_the_worker_deployment"
OPERATOR_HA = (
    "tests/kube/helm/test_operator_ha.py::test_the_charts_standby_replica_takes_over_when_the_leader_pod_is_deleted"
)
E2E = (
    "tests/kube/e2e/test_user_flow.py::"
    "test_a_user_installs_sends_fails_over_scales_upgrades_survives_the_leaders_loss_and_uninstalls"
)
BACKUP_EMAIL = (
    "tests/kube/operator/test_backup_email.py::"
    "test_force_open_on_sendgrid_hands_email_to_ses_which_sends_as_its_channel_provider_says"
)
CHOICE = (
    "tests/unit/providers/test_selection_from_environment.py::"
    "test_priority_and_switches_from_the_environment_choose_the_provider"
)
RATE = "tests/integration/api/test_rate_limit.py::test_over_the_rate_the_api_answers_429_with_retry_after"
SENTRY_OPTIONS = f"{SENTRY}::test_environment_release_and_sample_rate_from_the_environment_reach_the_events"
SES_SIGNED = "tests/unit/providers/test_ses.py::test_every_request_is_signed_and_the_sandbox_checks_it"

INVENTORY: dict[str, tuple[str, str]] = {
    # outbound_sender.config.Settings
    "DATABASE_URL": (PROCESS, RUN),
    "REDIS_URL": (
        UNIT,
        "tests/integration/quota/test_whatsapp_quota.py::test_redis_killed_mid_run_keeps_the_daily_quota",
    ),
    "OUTBOUND_STATE_DIR": (
        PROCESS,
        f"{CLI}::test_without_database_url_an_embedded_server_is_started_in_the_state_folder",
    ),
    "OUTBOUND_HTTP_HOST": (UNIT, f"{OPS}::test_metrics_are_on_their_own_port_not_on_the_api_port"),
    "OUTBOUND_HTTP_PORT": (PROCESS, f"{CLI}::test_a_worker_process_serves_health_readiness_and_metrics"),
    "OUTBOUND_LOG_FORMAT": (
        UNIT,
        "tests/unit/observability/test_log_format.py::"
        "test_a_commands_lines_take_the_format_and_level_from_the_environment",
    ),
    "OUTBOUND_LOG_LEVEL": (PROCESS, f"{K_PODS}::test_log_level_decides_what_the_rendered_worker_logs"),
    # WorkerSettings
    "OUTBOUND_WORKER_ENABLED": (PROCESS, f"{CLI}::test_worker_disabled_by_the_runbook_switch_claims_nothing"),
    # N processes share the pod (3 connections and a lease owner each); on the node the CPU limit sets N.
    "OUTBOUND_WORKER_PROCESSES": (
        PROCESS,
        "tests/integration/test_worker_processes.py::"
        "test_three_processes_share_the_pod_send_everything_once_and_drain_on_sigterm",
    ),
    "OUTBOUND_WORKER_BATCH_SIZE": (
        UNIT,
        f"{EFFECT}::test_the_batch_size_from_the_environment_is_what_each_claim_asks_for",
    ),
    "OUTBOUND_WORKER_POLL_INTERVAL_MS": (
        UNIT,
        f"{EFFECT}::test_messages_that_arrive_without_a_notify_are_claimed_at_the_poll_interval",
    ),
    "OUTBOUND_WORKER_RECOVERY_INTERVAL_MS": (
        UNIT,
        f"{EFFECT}::test_expired_leases_are_recovered_at_the_recovery_interval",
    ),
    "OUTBOUND_WORKER_CONTROL_INTERVAL_MS": (
        UNIT,
        f"{EFFECT}::test_control_rows_changed_without_a_notify_are_read_at_the_control_interval",
    ),
    "OUTBOUND_WORKER_MAX_IN_FLIGHT": (
        UNIT,
        f"{EFFECT}::test_no_more_calls_at_once_than_max_in_flight_from_the_environment",
    ),
    "OUTBOUND_WORKER_SHUTDOWN_GRACE_SECONDS": (
        UNIT,
        f"{EFFECT}::test_a_stop_waits_for_in_flight_sends_as_long_as_the_grace_from_the_environment",
    ),
    "OUTBOUND_WORKER_CHANNELS": (UNIT, CLAIMS),  # the EMAIL rows stay queued
    "OUTBOUND_WORKER_ID": (UNIT, CLAIMS),  # the lease owner written on the claimed rows
    "OUTBOUND_WORKER_LEASE_SECONDS": (UNIT, CLAIMS),  # the lease written on the claimed rows
    # ChannelSwitches (the runbook's switches)
    "SMS_PROVIDER_ENABLED": (UNIT, SWITCHES),
    "EMAIL_PROVIDER_ENABLED": (UNIT, SWITCHES),
    "WHATSAPP_PROVIDER_ENABLED": (UNIT, SWITCHES),
    # RetrySettings
    "OUTBOUND_RETRY_BASE_MS": (UNIT, RETRY),
    "OUTBOUND_RETRY_MAX_MS": (UNIT, RETRY),
    "OUTBOUND_RETRY_MAX_HINT_SECONDS": (UNIT, RETRY),
    # FailoverSettings: the worker's own circuit breaker
    "OUTBOUND_CIRCUIT_FAILURE_THRESHOLD": (
        UNIT,
        f"{EFFECT}::test_the_circuit_opens_after_the_failure_threshold_from_the_environment",
    ),
    "OUTBOUND_CIRCUIT_OPEN_SECONDS": (
        UNIT,
        f"{EFFECT}::test_the_circuit_probes_again_after_its_open_seconds_from_the_environment",
    ),
    "OUTBOUND_CIRCUIT_HALF_OPEN_PROBES": (
        UNIT,
        f"{EFFECT}::test_a_half_open_circuit_claims_as_many_as_its_probes_from_the_environment",
    ),
    # ProvidersSettings and the accounts' switches and failover order: the provider a message goes to
    "OUTBOUND_PROVIDERS_ENABLED": (UNIT, CHOICE),
    "TWILIO_ENABLED": (UNIT, CHOICE),
    "TWILIO_PRIORITY": (UNIT, CHOICE),
    "SENDGRID_ENABLED": (UNIT, CHOICE),
    "SENDGRID_PRIORITY": (UNIT, CHOICE),
    "WHATSAPP_ENABLED": (UNIT, CHOICE),
    "WHATSAPP_PRIORITY": (UNIT, CHOICE),
    "VONAGE_ENABLED": (UNIT, CHOICE),
    "VONAGE_PRIORITY": (UNIT, CHOICE),
    "SES_ENABLED": (UNIT, CHOICE),
    "SES_PRIORITY": (UNIT, CHOICE),
    # WebhookSettings and WhatsApp's handshake: the webhooks as `outbound api` mounts them
    "OUTBOUND_WEBHOOK_PATH_PREFIX": (UNIT, PREFIX_AND_LIMIT),
    "OUTBOUND_WEBHOOK_MAX_BODY_BYTES": (UNIT, PREFIX_AND_LIMIT),
    "WHATSAPP_VERIFY_TOKEN": (UNIT, HANDSHAKE),
    "WHATSAPP_VERIFY_TOKEN_FILE": (UNIT, HANDSHAKE),
    # SandboxServerSettings: `outbound sandbox --providers` (and `outbound run`)
    "OUTBOUND_SANDBOX_HOST": (PROCESS, SANDBOXES),
    "OUTBOUND_SANDBOX_TWILIO_PORT": (PROCESS, SANDBOXES),
    "OUTBOUND_SANDBOX_SENDGRID_PORT": (PROCESS, SANDBOXES),
    "OUTBOUND_SANDBOX_WHATSAPP_PORT": (PROCESS, SANDBOXES),
    "OUTBOUND_SANDBOX_VONAGE_PORT": (PROCESS, SANDBOXES),
    "OUTBOUND_SANDBOX_SES_PORT": (PROCESS, SANDBOXES),
    "WHATSAPP_APP_SECRET": (UNIT, APP_SECRET),
    "WHATSAPP_APP_SECRET_FILE": (UNIT, APP_SECRET),
    "SENDGRID_WEBHOOK_PUBLIC_KEY": (UNIT, EVENT_KEY),
    "SENDGRID_WEBHOOK_PUBLIC_KEY_FILE": (UNIT, EVENT_KEY),
    # MetricsSettings
    "OUTBOUND_METRICS_UPDATE_INTERVAL_MS": (
        UNIT,
        "tests/integration/observability/test_exposition.py::"
        "test_the_gauges_refresh_at_the_update_interval_from_the_environment",
    ),
    "OUTBOUND_METRICS_PORT": (UNIT, f"{OPS}::test_metrics_are_on_their_own_port_not_on_the_api_port"),
    # ProviderSettings
    "OUTBOUND_PROVIDER_KIND": (PROCESS, f"{ENTRY}::test_live_api_refuses_the_sandbox_secrets_and_accepts_its_own"),
    "OUTBOUND_PROVIDER_SANDBOX_URL": (PROCESS, K_DISABLE),
    "OUTBOUND_PROVIDER_NAME": (PROCESS, K_DISABLE),  # the control row of the ChannelProvider stops its worker
    # ApiSettings
    "OUTBOUND_API_ENABLED": (UNIT, f"{OPS}::test_with_the_api_disabled_only_operations_are_served"),
    "OUTBOUND_API_RATE_LIMIT_PER_SECOND": (UNIT, RATE),
    "OUTBOUND_API_RATE_LIMIT_BURST": (UNIT, RATE),
    "OUTBOUND_API_NEGATIVE_CACHE_SECONDS": (
        UNIT,
        f"{AUTH}::test_an_unknown_key_id_is_looked_up_once_per_negative_cache_period",
    ),
    "OUTBOUND_API_AUTH_FAILURES_MAX": (
        UNIT,
        f"{AUTH}::test_guesses_from_one_address_are_throttled_without_database_lookups",
    ),
    "OUTBOUND_API_AUTH_FAILURE_WINDOW_SECONDS": (UNIT, f"{AUTH}::test_the_address_may_try_again_after_the_window"),
    "OUTBOUND_API_MAX_HEADER_BYTES": (
        UNIT,
        f"{HTTP_LIMITS}::test_a_head_over_the_limit_gets_431_with_the_api_error_body",
    ),
    "OUTBOUND_API_REQUEST_TIMEOUT_SECONDS": (
        UNIT,
        f"{HTTP_LIMITS}::test_half_sent_requests_are_closed_by_the_deadline",
    ),
    "OUTBOUND_API_MAX_CONNECTIONS": (
        UNIT,
        f"{HTTP_LIMITS}::test_the_connection_cap_answers_503_and_frees_with_the_connections",
    ),
    "OUTBOUND_API_MAX_BODY_BYTES": (UNIT, f"{API_ENV}::test_the_body_limit_comes_from_the_environment"),
    "OUTBOUND_API_KEY_CACHE_SECONDS": (
        UNIT,
        f"{API_ENV}::test_a_revoked_key_works_until_the_key_cache_from_the_environment_expires",
    ),
    "OUTBOUND_API_POOL_SIZE": (
        UNIT,
        f"{API_ENV}::test_the_api_holds_at_most_its_pool_size_from_the_environment_in_connections",
    ),
    "OUTBOUND_API_ACCESS_LOG": (UNIT, f"{OPS}::test_correlation_id_is_returned_stored_and_logged"),
    # CallbackSettings
    "OUTBOUND_CALLBACKS_ALLOW_PRIVATE": (
        UNIT,
        "tests/integration/callbacks/test_ssrf.py::test_public_names_are_accepted_and_the_operator_setting_lets_private_ones_in",
    ),
    "OUTBOUND_CALLBACKS_TIMEOUT_SECONDS": (UNIT, f"{CALLBACKS}::test_a_receiver_slower_than_the_timeout_is_retried"),
    "OUTBOUND_CALLBACKS_MAX_ATTEMPTS": (
        UNIT,
        f"{CALLBACKS}::test_a_receiver_that_never_recovers_is_given_up_after_the_last_attempt",
    ),
    "OUTBOUND_CALLBACKS_RETRY_BASE_MS": (UNIT, CALLBACK_RETRY),
    "OUTBOUND_CALLBACKS_RETRY_MAX_MS": (UNIT, CALLBACK_RETRY),
    "OUTBOUND_CALLBACKS_POLL_INTERVAL_MS": (
        UNIT,
        "tests/integration/callbacks/test_settings_from_environment.py::"
        "test_an_idle_dispatcher_looks_for_work_at_the_poll_interval_from_the_environment",
    ),
    # TracingSettings
    "OUTBOUND_TRACING_ENABLED": (
        PROCESS,
        "tests/integration/observability/test_tracing.py::test_otlp_export_follows_the_standard_variables",
    ),
    # SentrySettings
    "SENTRY_DSN": (UNIT, f"{SENTRY}::test_error_log_becomes_a_tagged_event"),
    "SENTRY_ENVIRONMENT": (UNIT, SENTRY_OPTIONS),
    "SENTRY_RELEASE": (UNIT, SENTRY_OPTIONS),
    "SENTRY_SAMPLE_RATE": (UNIT, SENTRY_OPTIONS),
    # Provider accounts: what the live worker pods sent, as recorded by the sandboxes on the test node.
    "TWILIO_ACCOUNT_SID_FILE": (PROCESS, E2E),
    "TWILIO_AUTH_TOKEN_FILE": (PROCESS, E2E),
    "TWILIO_MESSAGING_SERVICE_SID": (PROCESS, E2E),
    "TWILIO_FROM_NUMBER": (
        PROCESS,
        "tests/kube/operator/test_twilio_sender.py::test_twilio_from_is_the_number_the_rendered_worker_sends_from",
    ),
    "SENDGRID_API_KEY_FILE": (PROCESS, E2E),
    "SENDGRID_FROM_EMAIL": (PROCESS, E2E),
    "SENDGRID_FROM_NAME": (PROCESS, E2E),
    "WHATSAPP_ACCESS_TOKEN_FILE": (PROCESS, E2E),
    "WHATSAPP_PHONE_NUMBER_ID": (PROCESS, E2E),
    "WHATSAPP_API_VERSION": (PROCESS, E2E),
    "VONAGE_FROM_NUMBER": (PROCESS, E2E),
    "VONAGE_SIGNATURE_METHOD": (PROCESS, E2E),
    "SES_REGION": (PROCESS, BACKUP_EMAIL),
    "SES_FROM_EMAIL": (PROCESS, BACKUP_EMAIL),
    "SES_FROM_NAME": (PROCESS, BACKUP_EMAIL),
    "SES_CONFIGURATION_SET_NAME": (PROCESS, BACKUP_EMAIL),
    "SES_ACCESS_KEY_ID": (UNIT, SES_SIGNED),
    "SES_SECRET_ACCESS_KEY": (UNIT, SES_SIGNED),
    "SES_SESSION_TOKEN": (UNIT, SES_SIGNED),
    "SES_REPLY_TO": (UNIT, "tests/unit/providers/test_ses.py::test_the_body_is_a_valid_send_email_input"),
    "VONAGE_API_KEY": (
        UNIT,
        "tests/integration/providers/test_vonage_provider.py::test_a_receipt_of_another_account_is_dropped",
    ),
    "VONAGE_API_SECRET": (UNIT, "tests/unit/providers/test_vonage.py::test_the_form_with_an_api_secret"),
    "VONAGE_SIGNATURE_SECRET": (UNIT, "tests/unit/providers/test_vonage.py::test_a_signed_form_carries_no_api_secret"),
    # The accounts' endpoints, credentials and options: what each client sends (a recording server)
    "TWILIO_BASE_URL": (UNIT, TWILIO_REQ),
    "TWILIO_ACCOUNT_SID": (UNIT, TWILIO_REQ),
    "TWILIO_AUTH_TOKEN": (UNIT, TWILIO_REQ),
    "TWILIO_STATUS_CALLBACK": (UNIT, TWILIO_REQ),
    "SENDGRID_BASE_URL": (UNIT, SENDGRID_REQ),
    "SENDGRID_API_KEY": (UNIT, SENDGRID_REQ),
    "WHATSAPP_BASE_URL": (UNIT, WHATSAPP_REQ),
    "WHATSAPP_ACCESS_TOKEN": (UNIT, WHATSAPP_REQ),
    "WHATSAPP_DEFAULT_LANGUAGE": (UNIT, WHATSAPP_REQ),
    "VONAGE_BASE_URL": (UNIT, VONAGE_REQ),
    "VONAGE_API_KEY_FILE": (UNIT, VONAGE_REQ),
    "VONAGE_API_SECRET_FILE": (UNIT, VONAGE_REQ),
    "VONAGE_SIGNATURE_SECRET_FILE": (UNIT, VONAGE_REQ),
    "SES_BASE_URL": (UNIT, SES_REQ),
    "SES_ACCESS_KEY_ID_FILE": (UNIT, SES_REQ),
    "SES_SESSION_TOKEN_FILE": (UNIT, SES_REQ),
    "OUTBOUND_PROVIDER_READ_TIMEOUT_SECONDS": (UNIT, SILENT),
    "OUTBOUND_PROVIDERS_AMBIGUOUS_RETRY_SECONDS": (UNIT, SILENT),
    "OUTBOUND_PROVIDER_CONNECT_TIMEOUT_SECONDS": (
        UNIT,
        f"{ACCOUNTS}::test_a_connection_that_is_never_accepted_ends_at_the_connect_timeout",
    ),
    "OUTBOUND_WEBHOOK_PUBLIC_URL": (UNIT, f"{ACCOUNTS}::test_the_status_callback_url_is_under_the_public_webhook_url"),
    "SES_SECRET_ACCESS_KEY_FILE": (UNIT, SES_REQ),
    # The SNS fields on the account the webhook handler reads (its other topic and foreign certificate: 403)
    "SES_SNS_TOPIC_ARNS": (
        UNIT,
        "tests/integration/providers/test_ses_provider.py::test_without_a_configured_topic_every_message_is_refused",
    ),
    "SES_SNS_CERTIFICATE_URL_PREFIXES": (
        UNIT,
        "tests/integration/providers/test_ses_provider.py::test_forged_tampered_unsigned_replayed_and_foreign_notifications_get_403",
    ),
    # `outbound` options read from the environment
    "OUTBOUND_ACTOR": (
        UNIT,
        "tests/integration/test_ops_commands.py::test_without_actor_the_audit_names_outbound_actor_from_the_environment",
    ),
    # The operator (its settings reach a running operator, or the workers it renders)
    "OUTBOUND_OPERATOR_DATABASE_URL": (PROCESS, K_IMAGE),
    "OUTBOUND_OPERATOR_HEALTH_PORT": (PROCESS, K_IMAGE),  # /healthz answers there
    "OUTBOUND_OPERATOR_METRICS_PORT": (  # the Ready gauge, read on that port of the running operator
        PROCESS,
        f"{K_PODS}::test_placement_pull_secrets_env_and_log_level_reach_the_worker_deployment_with_its_budget",
    ),
    "OUTBOUND_OPERATOR_NAMESPACES": (
        PROCESS,
        "tests/kube/operator/test_rbac_scope.py::test_cluster_wide_operator_runs_workers_only_where_its_role_is",
    ),
    "OUTBOUND_OPERATOR_RECONCILE_INTERVAL_SECONDS": (
        PROCESS,
        "tests/kube/operator/test_ready.py::test_ready_follows_available_worker_pods_through_scale_up_and_down",
    ),
    "OUTBOUND_OPERATOR_WORKER_IMAGE_REPOSITORIES": (
        PROCESS,
        "tests/kube/operator/test_admission.py::test_a_foreign_image_gets_no_deployment",
    ),
    "OUTBOUND_OPERATOR_ALLOW_INSECURE_SANDBOX_ENDPOINT": (
        PROCESS,
        "tests/kube/operator/test_admission.py::test_an_http_endpoint_gets_no_deployment_unless_the_operator_allows_the_sandbox",
    ),
    "OUTBOUND_OPERATOR_WORKER_DATABASE_SECRET": (PROCESS, E2E),
    # The WhatsApp workers load their rate limiter's script into the Redis of this Secret.
    "OUTBOUND_OPERATOR_WORKER_REDIS_SECRET": (PROCESS, E2E),
    # The worker pods run as the chart's sender ServiceAccount.
    "OUTBOUND_OPERATOR_WORKER_SERVICE_ACCOUNT": (PROCESS, E2E),
    "OUTBOUND_OPERATOR_WORKER_IMAGE_PULL_SECRETS": (
        PROCESS,
        "tests/kube/operator/test_pull_secrets_on_node.py::"
        "test_the_operators_pull_secrets_let_every_worker_pod_pull_a_private_image",
    ),
    # Every OperatorProcess runs with it true; ignored, they would wait for a KopfPeering object.
    "OUTBOUND_OPERATOR_STANDALONE": (PROCESS, K_DISABLE),
    # The chart's two replicas meet in its KopfPeering by name; the higher pod index acts.
    "OUTBOUND_OPERATOR_PEERING_NAME": (PROCESS, OPERATOR_HA),
    "OUTBOUND_OPERATOR_PRIORITY": (PROCESS, OPERATOR_HA),
    "OUTBOUND_OPERATOR_WORKER_IMAGE": (PROCESS, E2E),  # the chart's sender image: the worker pods run and send
    "OUTBOUND_OPERATOR_LOG_FORMAT": (UNIT, OPERATOR_LOGS),
    "OUTBOUND_OPERATOR_LOG_LEVEL": (UNIT, OPERATOR_LOGS),
    # The damping of the operator's scaling decisions (Runtime.damping)
    "OUTBOUND_OPERATOR_SCALE_DOWN_COOLDOWN_SECONDS": (UNIT, DAMPING),
    "OUTBOUND_OPERATOR_SCALE_TOLERANCE": (UNIT, DAMPING),
    "OUTBOUND_OPERATOR_BATCH_TOLERANCE": (UNIT, DAMPING),
    "OUTBOUND_OPERATOR_HALF_OPEN_PROBES_TO_CLOSE": (
        UNIT,
        "tests/unit/operator/test_circuit.py::"
        "test_the_reconciles_half_open_judgement_waits_for_the_probes_from_the_environment",
    ),
    # Rendered into the worker's environment, shown on the worker client built from it
    "OUTBOUND_OPERATOR_WORKER_WEBHOOK_PUBLIC_URL": (
        UNIT,
        f"{RENDERED}::test_the_workers_ask_for_receipts_at_the_operators_public_webhook_url",
    ),
    "OUTBOUND_OPERATOR_PROVIDER_READ_TIMEOUT_SECONDS": (
        UNIT,
        f"{RENDERED}::test_the_workers_give_up_on_a_silent_provider_at_the_operators_read_timeout",
    ),
    "OUTBOUND_OPERATOR_PROVIDER_CONNECT_TIMEOUT_SECONDS": (
        UNIT,
        f"{RENDERED}::test_the_workers_give_up_connecting_at_the_operators_connect_timeout",
    ),
    # the workers reach their database through it
}

# Variables no test shows taking effect yet, each with the reason. Moving one into INVENTORY removes
# it here; adding one here needs a reason in review.
OPEN_GAPS: dict[str, str] = {}


def _modules(package: ModuleType) -> Iterator[str]:
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        if not info.name.endswith("__main__"):  # running it would start the program
            yield info.name


def _subclasses(cls: type[BaseSettings]) -> Iterator[type[BaseSettings]]:
    sub: type[BaseSettings]
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def settings_models() -> list[type[BaseSettings]]:
    """Every BaseSettings model of the product, after importing each of its modules."""
    for package in (outbound_sender, outbound_operator):
        for name in _modules(package):
            importlib.import_module(name)
    return [
        model
        for model in set(_subclasses(BaseSettings))
        if model.__module__.startswith(("outbound_sender.", "outbound_operator."))
    ]


def _prefix(model: type[BaseSettings]) -> str:
    return str(model.model_config.get("env_prefix", ""))


def _variables(model: type[BaseSettings]) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names.add((_prefix(model) + (alias or name)).upper())
    return names


def cli_variables(command: Any) -> Iterator[str]:
    """Options of `outbound` (and its sub-commands) that may come from an environment variable
    (typer's own copy of click: its commands are walked by their attributes)."""
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        yield from [envvar] if isinstance(envvar, str) else list(envvar or ())
    for sub in getattr(command, "commands", {}).values():
        yield from cli_variables(sub)


@cache
def declared() -> frozenset[str]:
    """The environment variables the product reads: the settings models' fields and the `outbound`
    options with an envvar. A model whose subclasses all read under another prefix (a base like
    AccountSettings) is not read under its own names."""
    models = settings_models()
    found: set[str] = set(cli_variables(typer.main.get_command(cli.cli)))
    for model in models:
        subs = [s for s in models if s is not model and issubclass(s, model)]
        if subs and all(_prefix(s) != _prefix(model) for s in subs):
            continue
        found |= _variables(model)
    return frozenset(found)


def test_the_walk_finds_the_settings_of_every_command() -> None:
    expected = {"DATABASE_URL", "OUTBOUND_WORKER_BATCH_SIZE", "OUTBOUND_API_ENABLED", "TWILIO_AUTH_TOKEN_FILE"}
    expected |= {"SENTRY_DSN", "OUTBOUND_TRACING_ENABLED", "OUTBOUND_SANDBOX_SES_PORT", "OUTBOUND_OPERATOR_NAMESPACES"}
    expected |= {"OUTBOUND_ACTOR"}  # an `outbound` option (the runbook's ops commands)
    assert expected <= declared()
    assert not {"ENABLED", "PRIORITY", "BASE_URL"} & declared(), (
        "the accounts' base model is read only via its subclasses"
    )


def test_every_setting_names_the_test_of_its_effect_or_an_open_gap() -> None:
    listed = set(INVENTORY) | set(OPEN_GAPS)
    assert not set(INVENTORY) & set(OPEN_GAPS), f"both proven and open: {sorted(set(INVENTORY) & set(OPEN_GAPS))}"
    assert not declared() - listed, f"settings with no test of their effect: {sorted(declared() - listed)}"
    assert not listed - declared(), f"the inventory lists settings nothing reads: {sorted(listed - declared())}"


@pytest.mark.parametrize("variable", sorted(INVENTORY))
def test_each_named_test_exists(variable: str) -> None:
    evidence, test = INVENTORY[variable]
    assert evidence in (PROCESS, UNIT)
    path, _, name = test.partition("::")
    assert (ROOT / path).exists(), f"{variable}: no file {path}"
    assert name in functions_in(path), f"{variable}: no test {name} in {path}"


def test_every_open_gap_says_why() -> None:
    assert all(len(reason) > 5 for reason in OPEN_GAPS.values())


# Named in the docs or the chart but read by other programs: the build and test tooling (hack/),
# the user's own shell (the API key the quick start exports) and the example provider of
# docs/providers.md's "adding a provider".
NOT_SETTINGS = {
    "OUTBOUND_TOOLS_DIR",
    "OUTBOUND_IMAGES_DIR",
    "OUTBOUND_IMAGES_KEEP",
    "OUTBOUND_API_KEY",
    "OUTBOUND_SANDBOX_ACME_PORT",
}
VARIABLE = re.compile(
    r"(?<![A-Za-z0-9_$])((?:OUTBOUND|TWILIO|SENDGRID|WHATSAPP|VONAGE|SES|SENTRY|SMS|EMAIL)_[A-Z0-9_]*[A-Z0-9])\b"
)


def named_in_docs_and_chart() -> dict[str, set[str]]:
    """Our variables named anywhere in README, docs/, charts/ and deploy/, with where."""
    found: dict[str, set[str]] = {}
    for root in ("README.md", "docs", "charts", "deploy"):
        top = ROOT / root
        for path in [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file()):
            for match in VARIABLE.finditer(path.read_text(errors="replace")):
                found.setdefault(match[1], set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_variable_the_docs_and_the_chart_name_is_read_by_the_product() -> None:
    named = named_in_docs_and_chart()
    assert {"OUTBOUND_WORKER_BATCH_SIZE", "WHATSAPP_PROVIDER_ENABLED", "OUTBOUND_OPERATOR_DATABASE_URL"} <= set(named)
    unread = {name: sorted(where) for name, where in named.items() if name not in declared() | NOT_SETTINGS}
    assert not unread, f"set or documented, but read by nothing: {unread}"


@pytest.mark.parametrize(
    "sample", sorted((ROOT / "crds" / "samples").glob("channelprovider-*.yaml")), ids=lambda p: p.stem
)
def test_every_variable_the_operator_gives_a_worker_is_read_by_the_sender(sample: Path) -> None:
    spec = ChannelProviderSpec.of(yaml.safe_load(sample.read_text())["spec"])
    settings = OperatorSettings(
        database_url="postgresql://x",
        worker_redis_secret="outbound-redis",
        worker_webhook_public_url="https://api.example.com",
    )
    rendered = operator_env_names(sample.stem, spec, settings)
    assert "OUTBOUND_PROVIDER_KIND" in rendered
    assert not rendered - declared(), f"rendered, but read by nothing: {sorted(rendered - declared())}"
