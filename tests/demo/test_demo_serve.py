"""`byod demo --serve` through the real CLI: the demo runs, then serves its settings page,
dashboard and API over the demo's registry and local deployments; the printed links work
(a user's sign-in link opens their settings page, the admin token written to the demo
directory opens the dashboard); Ctrl-C stops the service and then the deployments, and no
secret was printed."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from local_ops import needs_toolchain

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain]


def _lines(proc: subprocess.Popen[str], into: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        into.put(line)


def test_demo_serve_serves_the_printed_links_until_ctrl_c(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYOD_")}
    byod = Path(sys.executable).with_name("byod")
    proc = subprocess.Popen([str(byod), "demo", "--dir", str(directory), "--users", "2",
                             "--serve", "--port", "0"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc, lines), daemon=True).start()
    seen: list[str] = []

    def read_until(marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                if proc.poll() is not None and lines.empty():
                    break
                continue
            seen.append(line)
            if marker in line:
                return line
        raise AssertionError(f"no {marker!r} in the output:\n" + "".join(seen)[-4000:])

    try:
        read_until("everything verified", timeout=480)
        base = re.search(r"serving this demo at (http://127\.0\.0\.1:\d+)",
                         read_until("serving this demo at", 30)).group(1)  # type: ignore[union-attr]
        user_line = read_until("settings page of ", 10)
        user, link = re.search(r"settings page of (\S+) .*: (http\S+)", user_line).groups()  # type: ignore[union-attr]
        admin_line = read_until("dashboard: ", 10)
        assert f"{base}/admin" in admin_line
        token_file = directory / "admin.token"
        assert str(token_file) in admin_line
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        token = token_file.read_text().strip()

        with httpx.Client(timeout=20) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the service never answered"
                time.sleep(0.2)
            page = client.get(link, follow_redirects=True)
            assert page.status_code == 200 and str(page.url) == f"{base}/ui/settings"
            assert user in page.text and "connected" in page.text.lower()
        with httpx.Client(timeout=20) as admin:
            assert admin.get(f"{base}/admin/login").status_code == 200
            signed_in = admin.post(f"{base}/admin/login", data={"token": token})
            assert signed_in.status_code == 303
            board = admin.get(f"{base}/admin/", follow_redirects=True)
            assert board.status_code == 200 and user in board.text
            fleet = admin.get(f"{base}/v1/fleet", headers={"Authorization": f"Bearer {token}"})
            assert fleet.status_code == 200, fleet.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    time.sleep(0.2)
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(seen)
    assert "service stopped." in output and "deployments stopped." in output
    assert json.loads((directory / "fleet" / "fleet.json").read_text())["running"] is False
    secrets = [token, (directory / "encryption.key").read_text().strip()]
    for dep in json.loads((directory / "fleet" / "secrets.json").read_text())["deployments"]:
        secrets += [dep["admin_key"], dep["admin_key"].split("|", 1)[1]]
    for secret in secrets:
        assert secret not in output
