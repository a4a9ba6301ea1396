"""Named SQL loading and settings validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from outbound_sender import app
from outbound_sender.config import load_settings
from outbound_sender.domain import Channel
from outbound_sender.errors import ConfigError
from outbound_sender.store import queries


def test_named_queries_are_split_by_name() -> None:
    text = "-- name: a\nSELECT 1;\n\n-- name: b\n-- a comment\nSELECT 2;\n"
    assert queries.parse(text) == {"a": "SELECT 1;", "b": "-- a comment\nSELECT 2;"}


def test_a_name_defined_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        queries.parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_every_hot_path_query_is_loaded() -> None:
    for name in ("claim_batch", "complete_batch", "recover_expired_leases", "quota_reserve", "insert_message"):
        assert queries.sql(name).strip()


def test_an_unknown_query_name_says_which() -> None:
    with pytest.raises(KeyError, match="no SQL query named 'nope'"):
        queries.sql("nope")


def test_runbook_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OUTBOUND_WORKER_ENABLED", "OUTBOUND_WORKER_BATCH_SIZE", "OUTBOUND_WORKER_POLL_INTERVAL_MS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.worker.enabled, settings.worker.batch_size, settings.worker.poll_interval_ms) == (True, 10, 5000)
    assert settings.metrics.update_interval_ms == 10_000


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOUND_WORKER_BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match="OUTBOUND_WORKER_BATCH_SIZE='0'"):
        load_settings()


def test_channel_switches_and_the_channel_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSAPP_PROVIDER_ENABLED", "false")
    monkeypatch.setenv("OUTBOUND_WORKER_CHANNELS", "sms, whatsapp")
    settings = load_settings()
    assert settings.switches.enabled() == {Channel.SMS, Channel.EMAIL}
    assert settings.worker.channels == [Channel.SMS, Channel.WHATSAPP]


def test_a_lease_shorter_than_the_provider_timeouts_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOUND_WORKER_LEASE_SECONDS", "10")
    with pytest.raises(ConfigError, match="must exceed the provider connect"):
        app.check_consistency(load_settings())


def test_one_loader_serves_any_directory_and_refuses_a_name_in_two_files(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: same\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- name: other\nSELECT 2;\n")
    assert queries.NamedSql(tmp_path)("other") == "SELECT 2;"
    (tmp_path / "c.sql").write_text("-- name: same\nSELECT 3;\n")
    with pytest.raises(ValueError, match="'same' is defined in two files"):
        queries.NamedSql(tmp_path)("same")


def test_the_operator_loads_its_own_statements_through_the_same_loader() -> None:
    from outbound_operator import db

    assert isinstance(db.sql, queries.NamedSql)
    assert db.sql("control_upsert").strip()
    with pytest.raises(KeyError, match=f"no SQL query named 'claim_batch' in {db.SQL_DIR}"):
        db.sql("claim_batch")  # the sender's statements are not the operator's
