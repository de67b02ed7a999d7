"""Capturing the push request the real Convex CLI builds for a bundle, so it can be
replayed to many deployments (``push.PushDeployAdapter``) without bundling again.

Bundling is the expensive part of ``convex deploy`` (seconds of CPU for node start-up,
esbuild and the schema bundle); the deployment's side of a push takes milliseconds. The
request the CLI sends to ``/api/deploy2/start_push`` does not depend on the deployment
when every module is sent (``get_config_hashes`` answering no module hashes), so it is
captured once per distinct bundle and Convex version: the unmodified CLI deploys, with the
same flags and environment as ``CliDeployAdapter``, to a throwaway server on 127.0.0.1
that answers the protocol minimally and records the request. The recorded request is kept
without its ``adminKey`` (the throwaway key is checked not to survive anywhere in it), in
memory and on disk, so a rollout captures each bundle once.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from pathlib import Path
from typing import Any, Iterable

import brotli

from engine.convex.deploy_cli import CliDeployAdapter
from engine.convex.toolchain import Toolchain
from engine.errors import DeploymentError, PushCaptureFailed
from engine.ports.bundle import Bundle
from engine.ports.deployment import DeploymentTarget

__all__ = ["CAPTURE_FORMAT", "PayloadCache", "PushPayload", "capture_push"]

log = logging.getLogger(__name__)

CAPTURE_FORMAT = 1
_MAX_BODY = 256 * 1024 * 1024


@dataclass(frozen=True)
class PushPayload:
    """One bundle's ``start_push`` request as the CLI built it, without ``adminKey``."""

    version_id: str
    kind: str
    fingerprint: str
    convex_version: str
    request: dict[str, Any] = field(repr=False)
    captured_at: float = 0.0
    _rest: bytes = field(init=False, repr=False, compare=False)
    _head: bytes = field(init=False, repr=False, compare=False)
    _compressed: dict[int, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if "adminKey" in self.request:
            raise ValueError("a push payload must not hold an admin key")
        app = self.request.get("appDefinition")
        if not isinstance(app, dict) or not isinstance(app.get("changedModules"), list):
            raise ValueError("a push payload needs appDefinition.changedModules")
        # serialised once: every deployment gets these bytes with its own key at the end
        # (the same for all of them up to there, so compressed once: ``compressed_for``)
        rest = json.dumps(self.request, separators=(",", ":"), ensure_ascii=False).encode()
        object.__setattr__(self, "_rest", rest)
        object.__setattr__(self, "_head", rest[:-1] + (b"" if rest == b"{}" else b","))
        object.__setattr__(self, "_compressed", {})

    @property
    def modules(self) -> int:
        return len(self.request["appDefinition"]["changedModules"])

    @property
    def size(self) -> int:
        return len(self._rest)

    def body_for(self, admin_key: str) -> bytes:
        """The request body for one deployment: the captured request plus its key."""

        return self._head + _key_tail(admin_key)

    def compressed_for(self, admin_key: str, *, quality: int) -> bytes:
        """``body_for`` as one brotli stream, the captured request compressed once per
        payload (and quality) for every deployment: its compressed bytes end flushed on a
        byte boundary, and each deployment's key follows as a stored (uncompressed)
        meta-block and the closing empty one (RFC 7932 §9.2-9.3)."""

        head = self._compressed.get(quality)
        if head is None:
            compressor = brotli.Compressor(mode=brotli.MODE_TEXT, quality=quality)
            head = compressor.process(self._head) + compressor.flush()
            head = self._compressed.setdefault(quality, head)
        return head + _stored_meta_block(_key_tail(admin_key)) + _LAST_EMPTY_META_BLOCK

    def to_json(self) -> dict[str, Any]:
        return {"format": CAPTURE_FORMAT, "version_id": self.version_id, "kind": self.kind,
                "fingerprint": self.fingerprint, "convex_version": self.convex_version,
                "captured_at": self.captured_at, "request": self.request}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PushPayload":
        if not isinstance(data, dict) or data.get("format") != CAPTURE_FORMAT:
            raise ValueError("not a push payload of a known format")
        return cls(version_id=str(data["version_id"]), kind=str(data["kind"]),
                   fingerprint=str(data["fingerprint"]),
                   convex_version=str(data["convex_version"]), request=data["request"],
                   captured_at=float(data.get("captured_at") or 0.0))


def _key_tail(admin_key: str) -> bytes:
    return b'"adminKey":' + json.dumps(admin_key).encode() + b"}"


_LAST_EMPTY_META_BLOCK = b"\x03"  # ISLAST = 1, ISLASTEMPTY = 1


def _stored_meta_block(data: bytes) -> bytes:
    """A brotli meta-block holding ``data`` uncompressed, to follow a flushed stream:
    ISLAST = 0, MNIBBLES, MLEN - 1, ISUNCOMPRESSED = 1, zero bits to the byte boundary,
    then the bytes (RFC 7932 §9.2)."""

    if not 0 < len(data) <= 1 << 24:
        raise ValueError("a stored brotli meta-block holds 1 byte to 16 MiB")
    size = len(data) - 1
    nibbles = 4 if size < 1 << 16 else 5 if size < 1 << 20 else 6
    bits = (nibbles - 4) << 1 | size << 3 | 1 << (3 + 4 * nibbles)
    header = bits.to_bytes((4 + 4 * nibbles + 7) // 8, "little")
    return header + data


# -- the capture server ---------------------------------------------------------------------

def _start_push_answer(request: dict[str, Any]) -> dict[str, Any]:
    """The smallest answer the CLI's ``startPushResponse`` schema accepts (with codegen on,
    ``analysis[""]`` is required)."""

    server_version = (request.get("appDefinition") or {}).get("udfServerVersion") or ""
    return {
        "environmentVariables": {}, "externalDepsId": None, "componentDefinitionPackages": {},
        "appAuth": [],
        "analysis": {"": {
            "definition": {"path": "", "definitionType": {"type": "app"}, "childComponents": [],
                           "httpMounts": {}, "exports": {"type": "branch", "branch": []}},
            "functions": {}, "udfConfig": {"serverVersion": server_version}}},
        "app": {"definitionPath": "", "componentPath": "", "args": {}, "childComponents": {},
                "httpRoutes": {"httpModuleRoutes": None, "mounts": []}, "exports": {}},
        "schemaChange": {"allocatedComponentIds": {}, "schemaIds": {"": "capture"},
                         "indexDiffs": {}},
    }


_FIXED_ANSWERS: dict[str, Any] = {
    "/api/get_config_hashes": {"config": {"functions": "convex/", "authInfo": []},
                               "moduleHashes": [], "nodeDependencies": [],
                               "udfServerVersion": None},
    "/api/deploy2/evaluate_schema": {"componentSchemaEvaluations": {},
                                     "newComponentDefinitions": []},
    "/api/deploy2/wait_for_schema": {"type": "complete"},
    "/api/deploy2/finish_push": {"authDiff": {"added": [], "removed": []},
                                 "definitionDiffs": {}, "componentDiffs": {}},
    "/api/deploy2/report_push_completed": {},
    "/api/check_admin_key": {},
}


def _read_body(headers: Message, rfile: BufferedIOBase) -> Any:
    """The JSON body of one request, de-chunked and decompressed as the CLI sends it; a
    body over ``_MAX_BODY`` raises ``ValueError`` so the server answers 400."""

    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        raw = b""
        while True:
            size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                rfile.readline()
                break
            raw += rfile.read(size)
            rfile.readline()
            if len(raw) > _MAX_BODY:
                raise ValueError("body too large")
    else:
        length = int(headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("body too large")
        raw = rfile.read(length)
    encoding = (headers.get("Content-Encoding") or "").lower()
    if encoding == "br":
        raw = brotli.decompress(raw)
    elif encoding == "gzip":
        raw = gzip.decompress(raw)
    return json.loads(raw) if raw else {}


class _CaptureServer:
    """A loopback server that plays a deployment for one ``convex deploy`` and keeps the
    ``start_push`` requests it receives. Unknown routes get 400 (the CLI retries 404s)."""

    def __init__(self, admin_key: str):
        self.admin_key = admin_key
        self.requests: list[dict[str, Any]] = []
        self.unknown: list[str] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="byod-push-capture")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "_CaptureServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # requests carry the (throwaway) key; nothing is logged

            def _send(self, status: int, body: Any, text: bool = False) -> None:
                data = (body if text else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                return _read_body(self.headers, self.rfile)

            def _authorized(self, body: Any) -> bool:
                given = (self.headers.get("Authorization") or "").removeprefix("Convex ")
                in_body = body.get("adminKey") if isinstance(body, dict) else None
                return given == server.admin_key and in_body in (None, server.admin_key)

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                if path == "/version":
                    return self._send(200, "byod-push-capture", text=True)
                if path == "/instance_name":
                    return self._send(200, "byod-push-capture", text=True)
                if path == "/api/check_admin_key" and self._authorized(None):
                    return self._send(200, {})
                with server._lock:
                    server.unknown.append(f"GET {path}")
                return self._send(400, {"code": "UnknownRoute", "message": path})

            def do_POST(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                try:
                    body = self._body()
                except (ValueError, OSError, brotli.error):
                    return self._send(400, {"code": "BadRequestBody", "message": path})
                if not self._authorized(body):
                    return self._send(401, {"code": "BadAdminKey", "message": "bad key"})
                if path == "/api/deploy2/start_push":
                    if not body.get("dryRun") and not body.get("forCodegen"):
                        with server._lock:
                            server.requests.append(body)
                    return self._send(200, _start_push_answer(body))
                if path in _FIXED_ANSWERS:
                    return self._send(200, _FIXED_ANSWERS[path])
                with server._lock:
                    server.unknown.append(f"POST {path}")
                return self._send(400, {"code": "UnknownRoute", "message": path})

        return Handler


def _convex_version(toolchain: Toolchain) -> str:
    version = toolchain.package_version("convex")
    if not version:
        raise PushCaptureFailed("the convex package is not installed in the toolchain; run "
                                "`byod toolchain install`", deployment="push capture")
    return version


def capture_push(bundle: Bundle, *, toolchain: Toolchain | None = None,
                 timeout: float = 300.0) -> PushPayload:
    """Run the real ``convex deploy`` for ``bundle`` against a capture server and return
    the ``start_push`` request it sent, without its key. Raises ``PushCaptureFailed``."""

    toolchain = toolchain or Toolchain.find()
    convex_version = _convex_version(toolchain)
    label = f"capture of {bundle.version_id}"
    key = f"byod-push-capture|{secrets.token_hex(32)}"
    started = time.monotonic()
    with _CaptureServer(key) as server:
        target = DeploymentTarget(label=label, url=server.url, admin_key=key,
                                  allow_insecure_local=True)
        try:
            with CliDeployAdapter(target, toolchain=toolchain, timeout=timeout,
                                  preflight=False) as cli:
                cli.deploy(bundle)
        except DeploymentError as exc:
            error = PushCaptureFailed(
                f"convex deploy could not build the push request of {bundle.version_id} "
                f"({bundle.fingerprint[:12]}): {exc}", deployment=label)
            error.kind = exc.kind if exc.kind in ("bundle", "typecheck") else "capture"
            raise error from None
        requests, unknown = list(server.requests), list(server.unknown)
    if len(requests) != 1:
        raise PushCaptureFailed(
            f"convex deploy sent {len(requests)} start_push requests for {bundle.version_id} "
            f"(expected one){'; unanswered: ' + ', '.join(unknown) if unknown else ''}",
            deployment=label)
    request = dict(requests[0])
    request.pop("adminKey", None)
    text = json.dumps(request)
    if key in text or key.split("|", 1)[1] in text:
        raise PushCaptureFailed(f"the push request of {bundle.version_id} carries the key "
                                "elsewhere than adminKey; refusing to keep it",
                                deployment=label)
    payload = PushPayload(version_id=bundle.version_id, kind=str(bundle.kind),
                          fingerprint=bundle.fingerprint, convex_version=convex_version,
                          request=request, captured_at=time.time())
    log.info("captured the push request of %s (%s): %d modules, %d KiB in %.1f s",
             bundle.version_id, bundle.fingerprint[:12], payload.modules, payload.size // 1024,
             time.monotonic() - started)
    return payload


# -- the cache ------------------------------------------------------------------------------

class PayloadCache:
    """Push payloads by bundle content (``Bundle.content_key``) + Convex version: memory, then ``directory``
    (optional), then one real capture. Thread-safe; a bundle is captured at most once at a
    time, and captures are bounded by ``capture_slots`` (they are CPU-bound)."""

    def __init__(self, directory: Path | None = None, *, toolchain: Toolchain | None = None,
                 timeout: float = 300.0, capture_slots: int | None = None):
        self.directory = Path(directory) if directory is not None else None
        self._toolchain = toolchain
        self.timeout = float(timeout)
        self._slots = threading.BoundedSemaphore(max(1, capture_slots or os.cpu_count() or 1))
        self._lock = threading.Lock()
        self._memory: dict[str, PushPayload] = {}
        self._pending: dict[str, threading.Lock] = {}
        self._convex_version: str | None = None
        self.captured = 0  # real CLI runs (reported by the benchmark)
        self.loaded = 0  # payloads read from disk

    @property
    def toolchain(self) -> Toolchain:
        if self._toolchain is None:
            self._toolchain = Toolchain.find()
        return self._toolchain

    @property
    def convex_version(self) -> str:
        if self._convex_version is None:
            self._convex_version = _convex_version(self.toolchain)
        return self._convex_version

    def key(self, bundle: Bundle) -> str:
        text = f"{bundle.content_key}\0{self.convex_version}"
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    def peek(self, bundle: Bundle) -> PushPayload | None:
        """The payload if it is already in memory or on disk; never captures."""

        key = self.key(bundle)
        with self._lock:
            found = self._memory.get(key)
        if found is None:
            found = self._load(key, bundle)
            if found is not None:
                with self._lock:
                    found = self._memory.setdefault(key, found)
        return found

    def get(self, bundle: Bundle) -> PushPayload:
        """The payload of ``bundle``, capturing it with the real CLI when unknown."""

        found = self.peek(bundle)
        if found is not None:
            return found
        key = self.key(bundle)
        with self._lock:
            gate = self._pending.setdefault(key, threading.Lock())
        with gate:  # a second caller for the same bundle waits for the first capture
            found = self.peek(bundle)
            if found is not None:
                return found
            with self._slots:
                payload = capture_push(bundle, toolchain=self.toolchain, timeout=self.timeout)
            with self._lock:
                self.captured += 1
                self._memory[key] = payload
            self._save(key, payload)
            return payload

    def prepare(self, bundles: Iterable[Any], *, workers: int | None = None,
                strict: bool = True) -> list[PushPayload]:
        """Capture every distinct bundle not yet known, concurrently up to the capture
        slots; returns the payloads in the order of the distinct bundles. With
        ``strict=False`` a bundle that cannot be captured is logged and left out (its
        deployments then fail on their own, with the typed error)."""

        distinct = list({b.content_key: b for b in bundles}.values())
        if not distinct:
            return []

        def one(bundle: Bundle) -> PushPayload | None:
            try:
                return self.get(bundle)
            except PushCaptureFailed as exc:
                if strict:
                    raise
                log.warning("%s", exc)
                return None

        with ThreadPoolExecutor(max_workers=max(1, workers or os.cpu_count() or 1)) as pool:
            return [p for p in pool.map(one, distinct) if p is not None]

    def _path(self, key: str) -> Path | None:
        return self.directory / f"{key}.json" if self.directory is not None else None

    def _load(self, key: str, bundle: Bundle) -> PushPayload | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            payload = PushPayload.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the unreadable cached push payload %s (%s)", path.name,
                        type(exc).__name__)
            return None
        if (payload.fingerprint, payload.version_id, payload.kind, payload.convex_version) != (
                bundle.fingerprint, bundle.version_id, str(bundle.kind), self.convex_version):
            log.warning("ignoring the cached push payload %s: it belongs to another bundle",
                        path.name)
            return None
        with self._lock:
            self.loaded += 1
        return payload

    def _save(self, key: str, payload: PushPayload) -> None:
        path = self._path(key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".payload-", dir=path.parent)
            with os.fdopen(fd, "w") as out:
                json.dump(payload.to_json(), out, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError as exc:  # the memory copy still serves this process
            log.warning("cannot write the push payload cache (%s)", exc.strerror)
