"""One headless Chromium per browser test module. Module, not session, scope: while
Playwright's sync API is open an event loop runs in this thread, and the engine's own
``asyncio.run`` in later tests would refuse to start."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .chromium import CHROMIUM, LAUNCH_ARGS, missing


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: ``BYOD_ARTIFACTS_DIR`` (CI keeps them), else the test's tmp."""

    where = os.environ.get("BYOD_ARTIFACTS_DIR")
    out = Path(where) if where else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out
