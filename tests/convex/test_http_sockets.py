"""The HTTP client against real loopback sockets (no mocks): a closed port, a server that
never answers, and one that drops the connection; each gives its typed error in time."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Iterator

import pytest

from engine.convex.http import AsyncConvexHttpClient, ConvexHttpClient
from engine.errors import DeploymentTimeout, DeploymentUnreachable
from engine.ports.deployment import DeploymentTarget

from .conftest import ADMIN_KEY, assert_no_secret


class MisbehavingServer:
    """Accepts connections on 127.0.0.1 and either never answers or hangs up at once."""

    def __init__(self, mode: str):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.settimeout(1.0)
            try:
                conn.recv(65536)
            except OSError:
                pass
            if self.mode == "drop":
                conn.close()
            else:
                self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self.sock.close()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[MisbehavingServer]:
    srv = MisbehavingServer(request.param)
    yield srv
    srv.close()


def _target(port: int) -> DeploymentTarget:
    return DeploymentTarget(label="local-1", url=f"http://127.0.0.1:{port}",
                            admin_key=ADMIN_KEY, allow_insecure_local=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connection_is_unreachable() -> None:
    with ConvexHttpClient(_target(_free_port()), retries=1, backoff_base=0.01) as client:
        with pytest.raises(DeploymentUnreachable, match="local-1.*cannot connect") as info:
            client.mutation("m:f", {})
    assert_no_secret(info.value)


@pytest.mark.parametrize("server", ["silent"], indirect=True)
def test_silent_server_times_out_within_the_timeout(server: MisbehavingServer) -> None:
    started = time.monotonic()
    with ConvexHttpClient(_target(server.port), timeout=0.5, retries=2) as client:
        with pytest.raises(DeploymentTimeout, match="local-1") as info:
            client.query("byod:version")
    assert time.monotonic() - started < 2.0  # timeouts are not retried
    assert server.accepted == 1
    assert_no_secret(info.value)


@pytest.mark.parametrize("server", ["silent"], indirect=True)
def test_silent_server_times_out_async(server: MisbehavingServer) -> None:
    async def go() -> None:
        async with AsyncConvexHttpClient(_target(server.port), timeout=0.5) as client:
            await client.read_version()

    with pytest.raises(DeploymentTimeout):
        asyncio.run(asyncio.wait_for(go(), timeout=5))


@pytest.mark.parametrize("server", ["drop"], indirect=True)
def test_dropped_connection_is_unreachable(server: MisbehavingServer) -> None:
    with ConvexHttpClient(_target(server.port), timeout=2, retries=2,
                          backoff_base=0.01) as client:
        with pytest.raises(DeploymentUnreachable, match="dropped"):
            client.query("m:q")
        assert server.accepted == 3  # a query is retried twice
        with pytest.raises(DeploymentUnreachable, match="dropped"):
            client.mutation("m:m")
        assert server.accepted == 4  # a mutation is not
