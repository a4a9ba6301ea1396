"""The provider registry is the one list of providers: unknown names are refused with the known ones,
no other module keeps a table of provider names, and the CRD and the database agree with it."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from outbound_operator.reconcile.spec import ChannelProviderSpec
from outbound_sender import app
from outbound_sender.errors import ConfigError
from outbound_sender.providers import registry
from outbound_sender.providers.accounts import load_provider_settings

ROOT = Path(__file__).resolve().parents[3]
REGISTRY_FILE = ROOT / "sender/outbound_sender/providers/registry.py"
CRD = ROOT / "crds/channelproviders.messaging.outbound.dev.yaml"
SCHEMA = ROOT / "sender/outbound_sender/store/schema.sql"
KNOWN = ", ".join(registry.names())


# ---- unknown names ---------------------------------------------------------------------------


def test_an_unknown_name_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(registry.UnknownProvider, match=f"unknown provider 'acme'; known providers: {KNOWN}"):
        registry.entry("acme")


async def test_check_provider_refuses_an_unknown_provider_instead_of_checking_whatsapp() -> None:
    """It used to build a WhatsApp client for any name it did not know."""
    async with httpx.AsyncClient() as client:
        with pytest.raises(registry.UnknownProvider, match=f"known providers: {KNOWN}"):
            app.check_provider_factory("acme", load_provider_settings(), client)
        with pytest.raises(registry.UnknownProvider, match="has no client to check"):
            app.check_provider_factory(registry.GENERIC, load_provider_settings(), client)


def test_enabling_an_unknown_provider_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOUND_PROVIDERS_ENABLED", "twilio,acme")
    with pytest.raises(
        ConfigError, match=f"OUTBOUND_PROVIDERS_ENABLED: unknown provider 'acme'; known providers: {KNOWN}"
    ):
        load_provider_settings()


def test_a_channel_provider_naming_an_unknown_provider_is_refused() -> None:
    with pytest.raises(ValidationError, match=f"known providers: {KNOWN}"):
        ChannelProviderSpec.of({"channel": "SMS", "provider": "acme"})


# ---- the registry is the only list -------------------------------------------------------------


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def provider_tables(source: str, own: str = "") -> Iterator[tuple[int, str]]:
    """Hard-coded provider lists in `source`: a dict, tuple, list or set literal (or a Literal[...])
    holding two registered names or more, and a comparison with the name of a provider that has an
    account (`name == "twilio"`: an if-chain over providers), except in that provider's own modules
    (`own`: providers/whatsapp.py compares the wire's "messaging_product" with "whatsapp"). "sandbox"
    alone is not counted there: it is also a value of OUTBOUND_PROVIDER_KIND."""
    names = set(registry.names())
    accounts = {p.name for p in registry.accounts()} - {own}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            found = _strings(ast.Tuple(elts=[k for k in node.keys if k is not None]))
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            found = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
            found = _strings(node.slice)
        elif isinstance(node, ast.Compare):
            hits = _strings(ast.Tuple(elts=[node.left, *node.comparators])) & accounts
            if hits:
                yield node.lineno, f"comparison with {sorted(hits)}"
            continue
        else:
            continue
        if len(found & names) >= 2:
            yield node.lineno, f"table of {sorted(found & names)}"


def product_modules() -> Iterator[Path]:
    for package in ("sender/outbound_sender", "operator/outbound_operator"):
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_module_but_the_registry_lists_providers() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in product_modules()
        if path != REGISTRY_FILE
        for line, what in provider_tables(path.read_text(), own=path.stem)
    ]
    assert not offenders, "provider lists outside providers/registry.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "source",  # the lists app.py, check.py, cli.py, spec.py had before the registry
    [
        'CHANNELS = {"twilio": 1, "sendgrid": 2}',
        'p.add_argument("provider", choices=["twilio", "sendgrid", "whatsapp"])',
        'provider: Literal["twilio", "sendgrid", "whatsapp", "sandbox"]',
        'if name == "twilio":\n    pass',
    ],
)
def test_the_scan_finds_the_tables_it_looks_for(source: str) -> None:
    assert list(provider_tables(source))


# ---- the CRD and the database agree with the registry -----------------------------------------


def _channel_provider_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def test_the_crd_enum_is_the_registry() -> None:
    assert _channel_provider_schema()["properties"]["provider"]["enum"] == list(registry.names())


def test_the_crd_pairs_each_provider_with_its_channels() -> None:
    rules = " ".join(rule["rule"] for rule in _channel_provider_schema()["x-kubernetes-validations"])
    pairs = set(re.findall(r"self\.channel == '(\w+)' && self\.provider == '(\w+)'", rules))
    expected = {(c.value, p.name) for p in registry.accounts() for c in p.channels}
    assert pairs == expected
    assert f"self.provider == '{registry.GENERIC}' ||" in rules  # the generic sandbox serves every channel


def test_the_crd_knows_each_providers_credentials_and_sender_settings() -> None:
    spec = _channel_provider_schema()
    keys_rule = spec["properties"]["credentialsSecretRef"]["properties"]["keys"]["x-kubernetes-validations"][0]
    crd_credentials = set(re.findall(r"'(\w+)'", keys_rule["rule"]))
    assert crd_credentials == {key for p in registry.REGISTRY.values() for key in p.render.credentials}
    for provider in registry.REGISTRY.values():
        if provider.render.sender_settings:
            block = spec["properties"][provider.name]["properties"]
            assert set(provider.render.sender_settings) <= set(block), provider.name


def test_the_database_kind_constraint_is_the_registry() -> None:
    match = re.search(r"provider_control_kind_check CHECK \(\(kind = ANY \(ARRAY\[(.*?)\]\)\)\)", SCHEMA.read_text())
    assert match is not None
    assert re.findall(r"'(\w+)'::text", match.group(1)) == list(registry.names())


# ---- each entry is whole ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", registry.accounts(), ids=lambda p: p.name)
def test_every_credential_the_operator_mounts_is_read_from_its_file(
    provider: registry.ProviderEntry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator points <PREFIX><FIELD>_FILE at the mounted Secret: the settings must read it."""
    assert provider.settings is not None
    assert provider.sandbox is not None
    sandbox = provider.sandbox.account("http://127.0.0.1:9")
    for field in provider.render.credentials.values():
        value = getattr(sandbox, field)
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        (tmp_path / field).write_text(text + "\n")
        monkeypatch.setenv(provider.variable(f"{field}_file"), str(tmp_path / field))
    loaded = provider.settings()
    for field in provider.render.credentials.values():
        assert getattr(loaded, field) == getattr(sandbox, field), field


@pytest.mark.parametrize("provider", registry.accounts(), ids=lambda p: p.name)
def test_every_entry_builds_a_client_of_its_channels(provider: registry.ProviderEntry) -> None:
    assert provider.client is not None
    assert provider.sandbox is not None
    client = provider.client(
        httpx.AsyncClient(), provider.sandbox.account("http://127.0.0.1:9"), registry.ClientOptions()
    )
    assert (client.name, client.channels) == (provider.name, provider.channels)
    assert provider.render.endpoint_variable == provider.variable("base_url")
    assert provider.settings is not None
    assert provider.webhook is not None
    assert set(provider.webhook.secrets) <= set(provider.settings.model_fields)


@pytest.mark.parametrize("provider", registry.accounts(), ids=lambda p: p.name)
def test_every_variable_the_operator_renders_is_a_setting_of_the_provider(provider: registry.ProviderEntry) -> None:
    assert provider.settings is not None
    read = {provider.variable(field) for field in provider.settings.model_fields}
    rendered = {provider.render.endpoint_variable, *provider.render.sender_settings.values()}
    rendered |= {provider.variable(f"{field}_file") for field in provider.render.credentials.values()}
    assert rendered <= read
