"""Registry writes per second from one process's threads on a PostgreSQL registry a few
milliseconds away: one store with a single connection (``pool_size=1``, how every thread
queued before the pool) beside one store with its pool (``POOL_SIZE``).

The registry is reached through a loopback proxy that holds every chunk for half the
round-trip time in each direction, so the numbers show what a registry on another machine
costs, not a loopback socket. Each thread saves resumable progress (one short write
transaction each: BEGIN, an upsert, COMMIT) in a loop; the script prints writes per second
for both and their ratio.

    .venv/bin/python benchmarks/registry_pool.py --registry postgresql://user:pw@host:port/db
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _record  # noqa: E402

from engine.config import registry_display  # noqa: E402
from engine.registry.postgres import POOL_SIZE, PostgresStore  # noqa: E402


class DelayProxy:
    """A loopback TCP proxy to ``host:port`` that delays each chunk by ``delay_s``, in its
    own thread and event loop; ``port`` is where it listens."""

    def __init__(self, host: str, port: int, delay_s: float):
        self.target, self.delay_s = (host, port), delay_s
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "DelayProxy":
        self._thread.start()
        if not self._ready.wait(10):
            raise SystemExit("the delay proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(self._pipe(reader, up_writer),
                                 self._pipe(up_reader, writer), return_exceptions=True)
        except (asyncio.CancelledError, OSError):  # the proxy stops, or the server went
            writer.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Forward in order, each chunk ``delay_s`` after it arrived (a link's latency,
        not a pause per chunk: chunks in flight overlap)."""

        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, due - self._loop.time()))
                dst.write(data)
                await dst.drain()
            dst.close()

        sender = asyncio.ensure_future(send())
        try:
            while data := await src.read(65536):
                queue.put_nowait((self._loop.time() + self.delay_s, data))
        finally:
            queue.put_nowait((0.0, b""))
            await sender


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{port}"))


def writes_per_s(url: str, pool_size: int, threads: int, writes: int) -> float:
    with PostgresStore(url, pool_size=pool_size) as store:
        go = threading.Barrier(threads + 1)

        def work(i: int) -> None:
            go.wait(60)
            for k in range(writes):
                store.save_progress("disconnect", f"bench-{pool_size}-{i}-{k}", {"k": k})

        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        go.wait(60)
        t0 = time.perf_counter()
        for t in pool:
            t.join()
        return threads * writes / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--registry", required=True, metavar="URL",
                   help="a postgresql://… registry (its password is never printed)")
    p.add_argument("--rtt-ms", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--writes", type=int, default=100, help="per thread")
    _record.add_json_out(p)
    a = p.parse_args()
    sys.argv = [registry_display(x) if x == a.registry else x for x in sys.argv]
    start = _record.started()
    target = urlsplit(a.registry)
    PostgresStore(a.registry).close()  # the schema, made without the proxy's delay
    with DelayProxy(target.hostname or "127.0.0.1", target.port or 5432,
                    a.rtt_ms / 2000) as proxy:
        url = through(a.registry, proxy.port)
        one = writes_per_s(url, 1, a.threads, a.writes)
        pooled = writes_per_s(url, POOL_SIZE, a.threads, a.writes)
    results: dict[str, Any] = {"rtt_ms": a.rtt_ms, "threads": a.threads,
                               "writes_per_thread": a.writes, "pool_size": POOL_SIZE,
                               "one_connection_writes_per_s": round(one, 1),
                               "pool_writes_per_s": round(pooled, 1),
                               "ratio": round(pooled / one, 2)}
    print(f"{a.threads} threads, registry {a.rtt_ms:g} ms away: one connection "
          f"{one:.0f} writes/s, a pool of {POOL_SIZE} {pooled:.0f} writes/s "
          f"({pooled / one:.2f}x)")
    _record.write("registry_pool", a.json_out, start, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
