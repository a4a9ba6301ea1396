"""An API client's callback endpoint on the node's host address, for the end-to-end run: the
chart's callback dispatcher pods POST every status change of the organisation's messages here.

Each request is kept as received (headers, raw body), so the test can check the signature with the
documented recipe (tests/integration/callbacks/receiver.signed_by) and count events per message.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.integration.callbacks.receiver import Request


class CallbackReceiver:
    """Answers 200 to every POST on ``host``, until :meth:`stop`."""

    def __init__(self, host: str) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._lock:
                    receiver.requests.append(Request(self.path, headers, body, time.monotonic()))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="callback-receiver", daemon=True)
        self.url = f"http://{host}:{self._server.server_address[1]}/outbound"

    def start(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def received(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def events_by_message(self) -> dict[int, set[str]]:
        """The distinct events each message's callbacks carried."""
        found: dict[int, set[str]] = {}
        for request in self.received():
            document = json.loads(request.body)
            found.setdefault(int(document["message"]["message_id"]), set()).add(str(document["event"]))
        return found

    def redeliveries(self) -> int:
        """Callbacks that arrived more than once (at least once delivery allows it; reported)."""
        counts = Counter(request.event_id for request in self.received())
        return sum(n - 1 for n in counts.values())
