"""A webhook receiver on 127.0.0.1 for alert tests: records JSON bodies, can fail first."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, fail_first: int = 0, status: int = 500):
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                text = self.rfile.read(length).decode()
                outer.attempts += 1
                if outer.attempts <= outer.fail_first:
                    self.send_response(outer.status)
                    self.end_headers()
                    return
                outer.raw.append(text)
                outer.bodies.append(json.loads(text))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/byod?token=webhook-secret-token"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
