"""B2's yardstick: the worker's HTTP stack alone, with no database and no worker around it.

    await run(count, in_flight=200, latency_ms=100, processes=1) -> {"msgs_per_s", "mean_ms"}

`processes` client processes (as many as the pod's worker processes) share `in_flight` concurrent
calls of `SandboxProvider.send` (the provider client every worker uses: httpx over aiohttp's
connector) against one generic sandbox at `latency_ms`. All start at one agreed moment; the rate is
the calls made over the time until the last process finished, so B2 and B2pod can be read against
what the HTTP stack itself allows on this machine.

    python -m bench.http_yardstick [--processes N] [--in-flight K] [--count C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence

from bench.common import BODY
from bench.worker_bench import _start_sandbox
from outbound_sender.domain import Channel, OutboundMessage
from outbound_sender.providers.sandbox import SandboxProvider
from outbound_sender.providers.transport import provider_client

START_DELAY = 1.0  # seconds from spawning the clients to their common start


async def _client(url: str, count: int, in_flight: int, start_at: float) -> dict[str, float]:
    """One client process's share: `count` calls, `in_flight` at a time, from `start_at` (epoch)."""
    provider = SandboxProvider(provider_client(in_flight, connect_timeout=5, read_timeout=20), url)
    durations: list[float] = []

    async def sender(first: int) -> None:
        for n in range(first, count, in_flight):
            message = OutboundMessage(n, "bench", Channel.SMS, f"+1555{n:07d}", "lease", 1, 0, 5, body=BODY)
            started = time.perf_counter()
            await provider.send(message)
            durations.append(time.perf_counter() - started)

    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(sender(n) for n in range(in_flight)))
        ended = time.time()
    finally:
        await provider.aclose()
    return {"calls": len(durations), "ended": ended, "seconds_in_calls": sum(durations)}


async def run(count: int, in_flight: int = 200, latency_ms: float = 100, processes: int = 1) -> dict[str, float]:
    """Calls per second of `processes` client processes sharing `in_flight`, and the mean call time."""
    sandbox, url = _start_sandbox(latency_ms)
    try:
        start_at = time.time() + START_DELAY
        shares = [(count // processes + (i < count % processes), in_flight // processes) for i in range(processes)]
        command = [sys.executable, "-m", "bench.http_yardstick", "--child", url, str(start_at)]
        children = [
            await asyncio.create_subprocess_exec(*command, str(n), str(k), stdout=subprocess.PIPE) for n, k in shares
        ]
        outputs = [await child.communicate() for child in children]
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    if any(child.returncode for child in children):
        raise RuntimeError(f"a yardstick client failed: {[child.returncode for child in children]}")
    results = [json.loads(stdout) for stdout, _ in outputs]
    calls = sum(r["calls"] for r in results)
    seconds = max(r["ended"] for r in results) - start_at
    return {"msgs_per_s": calls / seconds, "mean_ms": 1000 * sum(r["seconds_in_calls"] for r in results) / calls}


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--child"]:
        url, start_at, count, in_flight = args[1], float(args[2]), int(args[3]), int(args[4])
        print(json.dumps(asyncio.run(_client(url, count, in_flight, start_at))))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.http_yardstick", description=__doc__)
    parser.add_argument("--processes", type=int, default=1, help="client processes (default 1)")
    parser.add_argument("--in-flight", type=int, default=200, help="concurrent calls over all processes")
    parser.add_argument("--count", type=int, default=30_000, help="calls over all processes")
    parsed = parser.parse_args(args)
    print(json.dumps(asyncio.run(run(parsed.count, parsed.in_flight, 100, parsed.processes)), indent=2))


if __name__ == "__main__":
    main()
