"""The README's curl example works against `outbound run` (API + worker + sandbox in one process)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from outbound_sender.embedded import free_port
from tests.processes import outbound, stop, wait_http

README = Path(__file__).parents[3] / "README.md"


def readme_script(port: int, state: Path) -> str:
    block = re.search(r"```bash\n(export OUTBOUND_API_KEY.*?)```", README.read_text(), re.DOTALL)
    assert block, "README has no HTTP API example"
    script = block[1].replace(".state/", f"{state}/").replace("localhost:8080", f"localhost:{port}")
    return "set -euo pipefail\n" + script


def test_the_readme_example_works_against_outbound_run(db_dsn: str, tmp_path: Path) -> None:
    port, sandbox = free_port(), free_port()
    env = {
        "DATABASE_URL": db_dsn,
        "OUTBOUND_STATE_DIR": str(tmp_path),
        "OUTBOUND_HTTP_PORT": str(port),
        "OUTBOUND_METRICS_PORT": str(free_port()),
        "OUTBOUND_PROVIDER_SANDBOX_URL": f"http://127.0.0.1:{sandbox}",
        "OUTBOUND_LOG_LEVEL": "WARNING",
    }
    process = outbound("run", env=env, stdout=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        deadline = time.monotonic() + 60
        while not (tmp_path / "demo-api-key").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        result = subprocess.run(
            ["bash", "-c", readme_script(port, tmp_path)], check=False, capture_output=True, text=True, timeout=60
        )
    finally:
        assert stop(process) == 0
    assert result.returncode == 0, result.stderr
    assert '"correlation_id":"abc-123-def"' in result.stdout
    assert '"status":"CANCELLED"' in result.stdout
