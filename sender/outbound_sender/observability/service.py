"""Observability of one sender process, started beside its worker or API:

    metrics = Metrics()
    worker = app.build_worker(dsn, settings, metrics)
    await asyncio.gather(worker.run(stop), observe(dsn, metrics, settings, stop, serve=True))

`serve=True` exposes /actuator/prometheus and /metrics on OUTBOUND_HTTP_HOST:OUTBOUND_HTTP_PORT, for a
process without any HTTP server of its own; where the API server runs (api_commands.py api_running:
metrics on OUTBOUND_METRICS_PORT with the message API, on the service port without it), `serve=False`
only refreshes the database-derived gauges.
"""

from __future__ import annotations

import asyncio

from outbound_sender import app
from outbound_sender.config import AllSettings
from outbound_sender.metrics import DatabaseMetrics
from outbound_sender.observability.exposition import metrics_server
from outbound_sender.observability.refresher import GaugeRefresher


async def observe(
    dsn: str, metrics: DatabaseMetrics, settings: AllSettings, stop: asyncio.Event, *, serve: bool
) -> None:
    """Refresh the database-derived gauges (and serve the registry) until `stop` is set."""
    interval = settings.metrics.update_interval_ms / 1000
    jobs = [GaugeRefresher(dsn, metrics, interval_seconds=interval).run(stop)]
    if serve:
        base = settings.base
        server = metrics_server(metrics.registry, base.outbound_http_host, base.outbound_http_port)
        jobs.append(app.serve_until(server, stop))
    await asyncio.gather(*jobs)
