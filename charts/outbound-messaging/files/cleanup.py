"""Pre-delete hook of the outbound-messaging chart: delete the release's ChannelProviders and
QuotaPolicies and wait until they are gone, while the operator still runs.

The operator keeps a finalizer on each of them (it removes its runtime-control rows from PostgreSQL
on delete). `helm uninstall` deletes everything at once, the operator's ServiceAccount included, so
without this hook the resources would keep their finalizer forever. Standard library only: it runs
in the operator image with the hook's own ServiceAccount (delete/list on these two kinds only).

Environment: RELEASE (label app.kubernetes.io/instance), NAMESPACE, TIMEOUT_SECONDS (default 120);
KUBERNETES_API, TOKEN_FILE, CA_FILE default to the in-cluster values (the API server at the address
Kubernetes gives every pod, KUBERNETES_SERVICE_HOST and _PORT, as client-go does: no DNS needed).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
KINDS = ("channelproviders", "quotapolicies")
GROUP_VERSION = "apis/messaging.outbound.dev/v1alpha1"


def request(method: str, url: str) -> Any:
    token = Path(os.environ.get("TOKEN_FILE", ACCOUNT / "token")).read_text().strip()
    context = ssl.create_default_context(cafile=os.environ.get("CA_FILE", str(ACCOUNT / "ca.crt")))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    call = urllib.request.Request(url, method=method, headers=headers)
    with urllib.request.urlopen(call, context=context, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def api_server() -> str:
    if api := os.environ.get("KUBERNETES_API"):
        return api.rstrip("/")
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        return "https://kubernetes.default.svc"
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://{f'[{host}]' if ':' in host else host}:{port}"


def collection_url(kind: str) -> str:
    api = api_server()
    namespace = os.environ["NAMESPACE"]
    selector = urllib.parse.urlencode({"labelSelector": f"app.kubernetes.io/instance={os.environ['RELEASE']}"})
    return f"{api}/{GROUP_VERSION}/namespaces/{namespace}/{kind}?{selector}"


def remaining() -> list[str]:
    names = []
    for kind in KINDS:
        items = request("GET", collection_url(kind)).get("items") or []
        names += [f"{kind}/{item['metadata']['name']}" for item in items]
    return names


def main() -> int:
    deadline = time.monotonic() + float(os.environ.get("TIMEOUT_SECONDS", "120"))
    for kind in KINDS:
        request("DELETE", collection_url(kind))
    while left := remaining():
        if time.monotonic() > deadline:
            print(f"still present (is the operator running?): {', '.join(left)}", file=sys.stderr)
            return 1
        time.sleep(1)
    print("channelproviders and quotapolicies of the release deleted", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
