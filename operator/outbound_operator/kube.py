"""The only module that calls the Kubernetes API (besides kopf itself, which watches and patches).

Credentials come from kopf's own login (in-cluster ServiceAccount or kubeconfig), so the operator
authenticates once, the same way for kopf's watches and for our requests. Objects are converged by
server-side apply with our own field manager: one idempotent request for create, update and
resume; fields set by others (an HPA's replicas when spec.scaling.replicas.managedBy is External)
stay theirs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import kopf

FIELD_MANAGER = "outbound-operator"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"  # JSON is YAML
PLURALS = {"Deployment": "deployments", "ConfigMap": "configmaps", "PodDisruptionBudget": "poddisruptionbudgets"}
MERGE_PATCH = "application/merge-patch+json"


class KubeError(RuntimeError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"Kubernetes API answered {status}: {text[:500]}")
        self.status = status


def in_cluster(info: kopf.ConnectionInfo | None) -> kopf.ConnectionInfo | None:
    """kopf's ServiceAccount login with the API server's address taken from the pod's environment.

    kopf dials ``https://kubernetes.default.svc``, a name only cluster DNS resolves, so an operator
    whose DNS lookups fail (CoreDNS down or overloaded, ``dnsPolicy: Default``) stops reconciling.
    Kubernetes gives every pod the address itself (KUBERNETES_SERVICE_HOST and _PORT), which is
    what client-go and kubectl use inside a pod; the token, CA and namespace stay kopf's.
    """
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if info is None or not host:
        return info
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return dataclasses.replace(info, server=f"https://{f'[{host}]' if ':' in host else host}:{port}")


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{PLURALS[kind]}/{name}"


def _text(data: str | bytes) -> str:
    return data.decode() if isinstance(data, bytes) else data


def _pem(data: str | bytes) -> str:
    """Kubeconfig data fields may come base64-encoded or already as PEM."""
    text = _text(data)
    return text if "-----BEGIN" in text else base64.b64decode(text).decode()


def _load_client_cert(context: ssl.SSLContext, info: kopf.ConnectionInfo) -> None:
    if info.certificate_path and info.private_key_path:
        context.load_cert_chain(os.fsdecode(info.certificate_path), os.fsdecode(info.private_key_path))
        return
    if info.certificate_data and info.private_key_data:
        with tempfile.TemporaryDirectory() as folder:  # ssl only loads client keys from files
            cert, key = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
            for path, data in ((cert, info.certificate_data), (key, info.private_key_data)):
                with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
                    handle.write(_pem(data))
            context.load_cert_chain(cert, key)


def ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(cafile=os.fsdecode(info.ca_path) if info.ca_path else None)
    if info.ca_data:
        context.load_verify_locations(cadata=_pem(info.ca_data))
    _load_client_cert(context, info)
    return context


def headers(info: kopf.ConnectionInfo) -> dict[str, str]:
    if info.token:
        return {"Authorization": f"{info.scheme or 'Bearer'} {info.token}"}
    if info.username and info.password:
        pair = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


class Kube:
    """Server-side apply and reads of the objects the operator owns."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    async def configure(self, info: kopf.ConnectionInfo) -> None:
        """(Re)connect with the credentials kopf logged in with."""
        await self.aclose()
        self._client = httpx.AsyncClient(
            base_url=info.server, verify=ssl_context(info), headers=headers(info), timeout=httpx.Timeout(10.0)
        )

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("the Kubernetes client is not configured (no kopf login yet)")
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        response = await self.client.get(object_path(api_version, kind, namespace, name))
        if response.status_code == 404:
            return None
        return _json(response)

    async def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply (create or converge) with our field manager, taking back drifted fields."""
        meta = body["metadata"]
        path = object_path(body["apiVersion"], body["kind"], meta["namespace"], meta["name"])
        response = await self.client.patch(
            path,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(body),
            headers={"Content-Type": APPLY_CONTENT_TYPE},
        )
        return _json(response)

    async def patch_status(
        self, api_version: str, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource of one of our custom resources."""
        path = f"/apis/{api_version}/namespaces/{namespace}/{plural}/{name}/status"
        body = json.dumps({"status": status})
        response = await self.client.patch(path, content=body, headers={"Content-Type": MERGE_PATCH})
        return _json(response)

    async def watch(
        self, api_version: str, kind: str, namespace: str, name: str, seconds: int = 60
    ) -> AsyncIterator[dict[str, Any]]:
        """Each state of one object as the API server streams it (first its current state), for at
        most `seconds`; the caller watches again. A deleted object ends nothing: the watch goes on."""
        folder = object_path(api_version, kind, namespace, name).rsplit("/", 1)[0]
        params = {"watch": "true", "fieldSelector": f"metadata.name={name}", "timeoutSeconds": str(seconds)}
        timeout = httpx.Timeout(10.0, read=seconds + 30.0)
        async with self.client.stream("GET", folder, params=params, timeout=timeout) as response:
            if response.status_code >= 400:
                raise KubeError(response.status_code, (await response.aread()).decode(errors="replace"))
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":  # e.g. 410 Gone: the caller watches again
                    raise KubeError(int(event["object"].get("code") or 500), json.dumps(event["object"]))
                if event.get("type") in {"ADDED", "MODIFIED"}:
                    yield event["object"]

    async def pods(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The pods of a namespace that carry all `labels`."""
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        response = await self.client.get(f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector})
        items: list[dict[str, Any]] = _json(response).get("items") or []
        return items


def _json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise KubeError(response.status_code, response.text)
    data: dict[str, Any] = response.json()
    return data
