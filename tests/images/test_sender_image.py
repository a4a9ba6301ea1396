"""The sender image, run as the chart runs the API pod (read-only root, uid 10001, no capabilities):
its default command serves /healthz at once and /readyz only once the database's migrations are
current; `outbound migrate` from the same image (the chart's hook Job) makes it ready; SIGTERM
stops it cleanly. The time from `podman run` to /readyz is measured (docs/install.md)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests import pg
from tests.kube.processes import free_ports

from .containers import Container, Images
from .fixtures import Runner

pytestmark = [pytest.mark.images]


def http_status(url: str) -> int | None:
    """The status of a GET, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None


async def wait_status(container: Container, url: str, wanted: int, timeout: float = 90.0) -> float:
    """Poll ``url`` until it answers ``wanted``; the seconds it took. Fails fast if the container exits."""
    started = time.monotonic()
    while (status := http_status(url)) != wanted:
        assert container.running(), f"the container exited:\n{container.log()[-3000:]}"
        assert time.monotonic() - started < timeout, f"{url}: {status}, not {wanted}, after {timeout} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture
async def empty_database(pg_server: pg.PgServer) -> AsyncIterator[str]:
    """A database without any migration applied."""
    name = f"t_img_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    yield pg_server.dsn(name)
    await pg.drop_database(pg_server, name)


def api_env(dsn: str, port: int) -> dict[str, str]:
    # The API pod's environment in the chart with its default values: real webhook verification, no
    # sandbox, and no provider's webhooks accepted until `api.webhookProviders` names them (a live API
    # refuses to start without the secret of every provider whose webhooks it accepts).
    return {
        "DATABASE_URL": dsn,
        "OUTBOUND_PROVIDER_KIND": "live",
        "OUTBOUND_PROVIDERS_ENABLED": "",
        "OUTBOUND_HTTP_PORT": str(port),
    }


async def test_default_command_is_ready_only_once_migrated(
    images: Images, run_container: Runner, empty_database: str
) -> None:
    [port] = free_ports(1)
    env = api_env(empty_database, port)
    api = run_container(images.sender, env=env)  # the image's CMD: `outbound api`
    await wait_status(api, f"http://127.0.0.1:{port}/healthz", 200)
    assert http_status(f"http://127.0.0.1:{port}/readyz") == 503, "ready before any migration"

    migrate = run_container(images.sender, ["migrate"], env=env)
    assert migrate.wait(120) == 0, migrate.log()[-3000:]
    await wait_status(api, f"http://127.0.0.1:{port}/readyz", 200)
    conn = await asyncpg.connect(empty_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") > 0
    finally:
        await conn.close()

    assert api.stop() == 0, f"not a clean exit on SIGTERM:\n{api.log()[-3000:]}"


async def test_start_time_to_readyz(images: Images, run_container: Runner, db_dsn: str) -> None:
    [port] = free_ports(1)
    started = time.monotonic()
    api = run_container(images.sender, env=api_env(db_dsn, port))
    seconds = await wait_status(api, f"http://127.0.0.1:{port}/readyz", 200)
    print(f"sender image: /readyz 200 {time.monotonic() - started:.2f} s after `podman run` ({seconds:.2f} s polled)")
    assert api.stop() == 0
