"""``byod demo --serve``: once the demo is done, serve its settings pages, API and dashboard
over the demo's registry and local deployments until Ctrl-C (the service composed here,
above the demo's layer).

The service gets a signing secret made for this run only, accepts the demo's plain-http
loopback deployments, routes app calls to the demo's main deployment, and runs its job
worker and health monitor. It prints a sign-in link to one connected user's settings page
(a signed, short-lived link: it is that user's credential) and how to sign in to the
dashboard: with an admin API token written to ``<demo>/admin.token`` (0600), never
printed. Ctrl-C (or SIGTERM) stops the server, then the demo stops the deployments.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import uvicorn

from engine.commands.service import SECRET_ENV, create_token
from engine.config import state_dir
from engine.demo.run import DemoServe
from engine.errors import ByodError

__all__ = ["serve_demo"]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def serve_demo(demo: DemoServe, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the demo until interrupted (see the module docstring). ``port`` 0 takes any
    free port; the links printed name the one bound."""

    # the service is imported here, not at module level: `byod` starts without FastAPI
    from engine.serve.app import create_app
    from engine.serve.auth import mint_user_token
    from engine.serve.settings import ServeSettings

    ws, echo = demo.ws, demo.echo
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ByodError(f"cannot serve the demo on {host}:{port} ({exc.strerror}): pass "
                        "another --port (0 takes any free one)") from None
    bound = int(sock.getsockname()[1])
    base = f"http://{host}:{bound}"
    env = {**os.environ, SECRET_ENV: secrets.token_urlsafe(32)}  # this run only
    settings = ServeSettings.from_config(ws.config, env, host=host, port=bound,
                                         public_url=base, allow_insecure_local=True)
    main_client = ws.connector.client(demo.main_target)
    app = create_app(ws, settings, main_client=main_client)

    directory = state_dir(ws.config)
    _, token = create_token(ws, "demo-operator", "admin")
    token_file = directory / "admin.token"
    _write_private(token_file, token + "\n")
    connected = [u for u in demo.result.users
                 if ws.store.get_user(u).connection_status == "connected"]
    echo(f"\nserving this demo at {base} (Ctrl-C stops the service and the deployments)")
    if connected:
        user = connected[0]
        link = f"{base}/ui/login?token={quote(mint_user_token(settings, user))}"
        minutes = round(settings.user_token_ttl_s / 60)
        echo(f"  settings page of {user} (a sign-in link for that user only, valid "
             f"{minutes} min): {link}")
    echo(f"  dashboard: {base}/admin — sign in with the admin token in {token_file}")
    echo(f"  API: {base}/v1 (OpenAPI at {base}/openapi.json)")
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                    server_header=False, lifespan="on"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    echo("\nservice stopped.")


class _Server(uvicorn.Server):
    """uvicorn's server, except that Ctrl-C or SIGTERM ends ``run`` and nothing more:
    uvicorn re-raises the signal once it stopped, which would end the process before the
    demo stops its deployments."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        wanted = (signal.SIGINT, signal.SIGTERM)
        before = {sig: signal.signal(sig, self.handle_exit) for sig in wanted}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)
