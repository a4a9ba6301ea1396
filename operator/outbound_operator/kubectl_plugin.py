"""`kubectl outbound`: provider and quota state at a glance, and the circuit breaker in one word.

Installed as the console script ``kubectl-outbound``; kubectl runs any ``kubectl-<name>`` on PATH as
``kubectl <name>``, passing every argument after the name. Reads come from the API server (what the
operator writes into each resource's status); trip and reset are merge patches of
``spec.circuitBreaker.mode``, which the operator turns into the runtime control row the workers obey.

    kubectl outbound status [-n NS | -A] [-o wide|json|yaml]
    kubectl outbound trip NAME [--wait]     spec.circuitBreaker.mode: ForceOpen (stop all sends)
    kubectl outbound reset NAME [--wait]    spec.circuitBreaker.mode: Auto (probe, then close)

Exit codes: 0 done; 1 the request failed (not found, forbidden, unauthorized, API server
unreachable, kubeconfig unusable, --wait timed out or the operator reports Reconciled=False); 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, NoReturn, TextIO

import httpx
import yaml

from outbound_operator.kube import headers, ssl_context
from outbound_operator.kubeconfig import KubeconfigError, Target, load
from outbound_operator.reconcile.spec import TIER_LIMITS
from outbound_sender.domain import CircuitMode

GROUP, VERSION = "messaging.outbound.dev", "v1alpha1"
CHANNEL_PROVIDERS, QUOTA_POLICIES = "channelproviders", "quotapolicies"
KINDS = {CHANNEL_PROVIDERS: "ChannelProvider", QUOTA_POLICIES: "QuotaPolicy"}
FIELD_MANAGER = "kubectl-outbound"
MODES = {"trip": CircuitMode.FORCE_OPEN, "reset": CircuitMode.AUTO}  # spec.circuitBreaker.mode
NONE = "<none>"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
REQUEST_TIMEOUT_SECONDS = 30.0
WAIT_INTERVAL_SECONDS = 0.5


class PluginError(RuntimeError):
    """A failure to report as one line on stderr, exit code 1."""


class ApiError(PluginError):
    """The API server refused: its Status reason and message, as kubectl prints them."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"Error from server ({reason}): {message}")
        self.status, self.reason = status, reason


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    reason = str(body.get("reason") or response.reason_phrase or response.status_code)
    message = str(body.get("message") or response.text.strip() or reason)
    if response.status_code == 401:
        message = f"{message}: the kubeconfig's credentials were refused (expired token or certificate?)"
    return ApiError(response.status_code, reason, message)


class Api:
    """The few requests the plugin makes, over the kubeconfig's connection."""

    def __init__(self, target: Target) -> None:
        info = target.connection
        self.server = info.server
        self._client = httpx.Client(
            base_url=info.server,
            verify=ssl_context(info),
            headers={**headers(info), "Accept": "application/json", "User-Agent": FIELD_MANAGER},
            timeout=httpx.Timeout(REQUEST_TIMEOUT_SECONDS),
            proxy=info.proxy_url,
        )

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise PluginError(f"cannot reach the API server at {self.server}: {error}") from error
        if response.status_code >= 400:
            raise _api_error(response)
        data: dict[str, Any] = response.json()
        return data

    @staticmethod
    def path(plural: str, namespace: str | None, name: str | None = None) -> str:
        scope = f"/namespaces/{namespace}" if namespace else ""
        return f"/apis/{GROUP}/{VERSION}{scope}/{plural}" + (f"/{name}" if name else "")

    def list(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        """All objects of `plural` in `namespace` (None: every namespace), sorted like kubectl."""
        try:
            items: list[dict[str, Any]] = self._send("GET", self.path(plural, namespace))["items"]
        except ApiError as error:
            if error.status == 404:
                raise PluginError(
                    f"the API server does not serve {plural}.{GROUP}: are the CRDs installed (kubectl apply -f crds/)?"
                ) from error
            raise
        return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self._send("GET", self.path(plural, namespace, name))
        except ApiError as error:
            if error.status == 404:
                raise PluginError(f'{KINDS[plural]} "{name}" not found in namespace "{namespace}"') from error
            raise

    def merge_patch(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._send(
            "PATCH",
            self.path(plural, namespace, name),
            params={"fieldManager": FIELD_MANAGER},
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        )


# -- rendering --------------------------------------------------------------------------------


def _dig(obj: Mapping[str, Any], *keys: str) -> Any:
    value: Any = obj
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(seconds: float) -> str:
    """kubectl's short age style: 45s, 3m20s, 17m, 5h, 3d."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


def _age(value: Any, now: dt.datetime) -> str:
    moment = _parse_time(value)
    return NONE if moment is None else duration((now - moment).total_seconds())


def _until(value: Any, now: dt.datetime) -> str:
    moment = _parse_time(value)
    if moment is None:
        return NONE
    left = (moment - now).total_seconds()
    return f"in {duration(left)}" if left > 0 else f"{duration(-left)} ago"


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for item in _dig(obj, "status", "conditions") or []:
        if isinstance(item, Mapping) and item.get("type") == kind:
            return item
    return {}


def circuit_cell(cp: Mapping[str, Any]) -> str:
    """The observed state, with the manual override beside it when one is set."""
    state = _text(_dig(cp, "status", "circuit", "state"))
    mode = _dig(cp, "spec", "circuitBreaker", "mode") or CircuitMode.AUTO
    return state if mode == CircuitMode.AUTO else f"{state} ({mode})"


def _percent(value: Any) -> str:
    return NONE if value is None else f"{float(value):g}%"


def provider_row(cp: Mapping[str, Any], now: dt.datetime, *, wide: bool) -> list[str]:
    status = cp.get("status") or {}
    row = [
        cp["metadata"]["name"],
        _text(_dig(cp, "spec", "channel")),
        _text(_dig(cp, "spec", "provider")),
        _text(_dig(cp, "spec", "enabled") is not False),  # the CRD defaults it to true
        circuit_cell(cp),
        _percent(status.get("successRatePercent")),
        _text(status.get("queueDepth")),
        _text(status.get("batchSize")),
        _text(status.get("replicas")),
    ]
    if wide:
        ready = _condition(cp, "Ready")
        row += [
            _text(_dig(cp, "spec", "priority")),
            f"{status.get('readyReplicas') or 0}/{status.get('replicas') or 0}",
            _text(status.get("requestsInWindow")),
            _text(_dig(cp, "status", "circuit", "reason")),
            _text(ready.get("status") and f"{ready.get('status')}/{ready.get('reason')}"),
            _age(status.get("observedAt"), now),
            _age(cp["metadata"].get("creationTimestamp"), now),
        ]
    return row


PROVIDER_HEADER = [
    "CHANNELPROVIDER",
    "CHANNEL",
    "PROVIDER",
    "ENABLED",
    "CIRCUIT",
    "SUCCESS",
    "QUEUE",
    "BATCH",
    "REPLICAS",
]
PROVIDER_WIDE = ["PRIORITY", "READY-REPLICAS", "CALLS", "CIRCUIT-REASON", "READY", "OBSERVED", "AGE"]
QUOTA_HEADER = ["QUOTAPOLICY", "SCOPE", "TIER", "LIMIT", "USED", "REMAINING", "RESET"]
QUOTA_WIDE = ["DAILY-LIMIT", "THROTTLED-UNTIL", "WARNING", "FALLBACK", "READY", "AGE"]


def quota_limit(qp: Mapping[str, Any]) -> str:
    """The limit in force (a manual reduction included), else the declared one: dailyLimit, else
    the tier's."""
    effective = _dig(qp, "status", "effectiveLimit")
    if effective is not None:
        return str(effective)
    declared = _dig(qp, "spec", "dailyLimit")
    if declared is not None:
        return str(declared)
    tier = _dig(qp, "spec", "tier")
    if tier == "Unlimited":
        return "unlimited"
    return _text(TIER_LIMITS.get(tier) if isinstance(tier, str) else None)


def quota_row(qp: Mapping[str, Any], now: dt.datetime, *, wide: bool) -> list[str]:
    spec, status = qp.get("spec") or {}, qp.get("status") or {}
    scope = f"org/{_text(spec.get('orgId'))}"
    row = [
        qp["metadata"]["name"],
        scope,
        _text(spec.get("tier")),
        quota_limit(qp),
        _text(status.get("used")),
        _text(status.get("remaining")),
        _until(status.get("resetAt"), now),
    ]
    if wide:
        warning, ready = _condition(qp, "QuotaWarning"), _condition(qp, "Ready")
        row += [
            _text(spec.get("dailyLimit")),
            _until(status.get("throttledUntil"), now),
            _text(warning.get("reason") if warning.get("status") == "True" else None),
            _text(spec.get("fallbackChannel")),
            _text(ready.get("status")),
            _age(qp["metadata"].get("creationTimestamp"), now),
        ]
    return row


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns three spaces apart, as kubectl prints them."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]
    return "\n".join(lines)


def status_tables(
    providers: Sequence[Mapping[str, Any]],
    quotas: Sequence[Mapping[str, Any]],
    *,
    now: dt.datetime,
    wide: bool,
    all_namespaces: bool,
) -> list[str]:
    sections = []
    for items, header, extra, render in (
        (providers, PROVIDER_HEADER, PROVIDER_WIDE, provider_row),
        (quotas, QUOTA_HEADER, QUOTA_WIDE, quota_row),
    ):
        if not items:
            continue
        columns = (["NAMESPACE"] if all_namespaces else []) + header + (extra if wide else [])
        rows = [
            ([o["metadata"].get("namespace", "")] if all_namespaces else []) + render(o, now, wide=wide) for o in items
        ]
        sections.append(table(columns, rows))
    return sections


def as_list(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The shape of `kubectl get -o json` for several objects."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {"resourceVersion": ""}}


def dump(data: Mapping[str, Any], output: str, out: TextIO) -> None:
    if output == "json":
        out.write(json.dumps(data, indent=4) + "\n")
    else:
        out.write(yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False))


# -- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    namespace: str | None  # None: every namespace
    label: str  # for messages


def _scope(args: argparse.Namespace, target: Target) -> Scope:
    if args.all_namespaces:
        return Scope(None, "any namespace")
    namespace = args.namespace or target.namespace
    return Scope(namespace, f'namespace "{namespace}"')


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def status(api: Api, args: argparse.Namespace, target: Target, out: TextIO, err: TextIO) -> int:
    scope = _scope(args, target)
    providers = api.list(CHANNEL_PROVIDERS, scope.namespace)
    quotas = api.list(QUOTA_POLICIES, scope.namespace)
    if args.output in ("json", "yaml"):
        dump(as_list([*providers, *quotas]), args.output, out)
        return EXIT_OK
    wide, every = args.output == "wide", scope.namespace is None
    sections = status_tables(providers, quotas, now=_now(), wide=wide, all_namespaces=every)
    if sections:
        out.write("\n\n".join(sections) + "\n")
    for items, kind in ((providers, "ChannelProviders"), (quotas, "QuotaPolicies")):
        if not items:
            err.write(f"No {kind} found in {scope.label}.\n")
    return EXIT_OK


def _reconciled(obj: Mapping[str, Any], generation: int) -> bool:
    observed = _dig(obj, "status", "observedGeneration")
    return isinstance(observed, int) and observed >= generation


def wait_reconciled(
    fetch: Callable[[], dict[str, Any]], generation: int, timeout: float, *, clock: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    """Poll until the operator's status describes `generation` (or later)."""
    deadline = clock() + timeout
    while True:
        obj = fetch()
        if _reconciled(obj, generation):
            return obj
        if clock() >= deadline:
            observed = _dig(obj, "status", "observedGeneration")
            raise PluginError(
                f"the operator did not reconcile generation {generation} within {timeout:g}s "
                f"(status describes generation {_text(observed)}): is it running and watching this namespace?"
            )
        time.sleep(WAIT_INTERVAL_SECONDS)


def set_mode(api: Api, args: argparse.Namespace, target: Target, out: TextIO, err: TextIO) -> int:
    namespace = args.namespace or target.namespace
    mode = MODES[args.command]
    name = args.name
    before = api.get(CHANNEL_PROVIDERS, namespace, name)
    previous = _dig(before, "spec", "circuitBreaker", "mode") or CircuitMode.AUTO
    obj = before
    if previous != mode:
        obj = api.merge_patch(CHANNEL_PROVIDERS, namespace, name, {"spec": {"circuitBreaker": {"mode": mode}}})
    if args.wait:
        generation = int(obj["metadata"].get("generation") or 0)
        obj = wait_reconciled(lambda: api.get(CHANNEL_PROVIDERS, namespace, name), generation, args.timeout)
    if args.output in ("json", "yaml"):
        dump(obj, args.output, out)
        return EXIT_OK
    verb = "tripped" if args.command == "trip" else "reset"
    change = f"{verb}: circuit mode {mode} (was {previous})" if previous != mode else f"unchanged: mode already {mode}"
    line = f"channelprovider.{GROUP}/{name} {change}"
    if args.wait:
        line += "; " + waited_outcome(obj)
    out.write(line + "\n")
    return EXIT_FAILED if args.wait and _condition(obj, "Reconciled").get("status") == "False" else EXIT_OK


def waited_outcome(obj: Mapping[str, Any]) -> str:
    """The circuit the operator reports, or why it applied nothing (a refused spec is Reconciled=False).

    Whether the worker pods are up (Ready) does not decide the outcome: the circuit mode reaches the
    running workers through the control row, and a trip must succeed while pods are missing."""
    outcome = (
        f"circuit {_text(_dig(obj, 'status', 'circuit', 'state'))} ({_text(_dig(obj, 'status', 'circuit', 'reason'))})"
    )
    applied = _condition(obj, "Reconciled")
    if applied.get("status") == "False":
        outcome += f"; Reconciled=False ({applied.get('reason')}): {applied.get('message')}"
    return outcome


# -- command line -----------------------------------------------------------------------------


def timeout_seconds(text: str) -> float:
    """kubectl's --timeout: a Go duration (30s, 2m, 1m30s) or plain seconds."""
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 30s, 2m, 1m30s)")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def _common(*, suppress: bool) -> argparse.ArgumentParser:
    """kubectl's flags; accepted before or after the command (defaults only on the top parser)."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("kubectl flags")
    group.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's, else default)")
    group.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="every namespace (status only)",
    )
    group.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    group.add_argument("--context", default=default, help="kubeconfig context to use (default: the current one)")
    group.add_argument(
        "-o", "--output", choices=["wide", "json", "yaml"], default=default, help="output format (default: a table)"
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl outbound",
        description="Outbound messaging: ChannelProvider and QuotaPolicy state, and the circuit breaker.",
        epilog="Exit codes: 0 done; 1 the request failed (not found, forbidden, unreachable, --wait timed out "
        "or the operator reports Reconciled=False); 2 bad usage.",
        parents=[_common(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    flags = _common(suppress=True)
    commands.add_parser(
        "status",
        parents=[flags],
        help="ChannelProviders and QuotaPolicies as the operator reports them",
        description="ChannelProviders (channel, provider, enabled, circuit, success rate, queue depth, batch, "
        "replicas) and QuotaPolicies (limit, used, remaining, reset), read from the API server.",
    )
    for command, mode, text in (
        ("trip", CircuitMode.FORCE_OPEN, "open the circuit: workers stop calling this provider within about a second"),
        (
            "reset",
            CircuitMode.AUTO,
            "back to the measured breaker: the circuit probes (HalfOpen), then closes on success",
        ),
    ):
        sub = commands.add_parser(
            command, parents=[flags], help=f"spec.circuitBreaker.mode={mode}: {text}", description=text
        )
        sub.add_argument("name", metavar="NAME", help="the ChannelProvider")
        sub.add_argument(
            "--wait",
            action="store_true",
            help="wait until the operator has applied the change (exit 1 if it reports Reconciled=False)",
        )
        sub.add_argument(
            "--timeout", type=timeout_seconds, default=60.0, help="how long --wait waits (e.g. 30s, 2m; default 60s)"
        )
    return parser


def _version() -> str:
    try:
        return metadata.version("outbound-messaging")
    except metadata.PackageNotFoundError:
        return "unknown"


def _usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.error(message)


def run(argv: Sequence[str] | None, out: TextIO, err: TextIO) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.all_namespaces and args.command != "status":
        _usage_error(parser, f"--all-namespaces does not apply to {args.command}: name the namespace with -n")
    if args.all_namespaces and args.namespace:
        _usage_error(parser, "--namespace and --all-namespaces exclude each other")
    if args.output == "wide" and args.command != "status":
        _usage_error(parser, f"-o wide does not apply to {args.command} (use -o json or -o yaml)")
    try:
        target = load(args.kubeconfig, args.context)
        api = Api(target)
        try:
            command = status if args.command == "status" else set_mode
            return command(api, args, target, out, err)
        finally:
            api.close()
    except (PluginError, KubeconfigError) as error:
        message = str(error)
        err.write(message + "\n" if message.startswith("Error from server") else f"error: {message}\n")
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv, sys.stdout, sys.stderr)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
