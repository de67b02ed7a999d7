"""Debian's Chromium driven by Playwright, shared by the browser tests: where it is, how it
is launched (headless, no sandbox, no network of its own), the viewports the pages are
checked at, and the rule for a missing browser (skipped locally, a failure under CI)."""

from __future__ import annotations

import os

import pytest

__all__ = ["CHROMIUM", "LAUNCH_ARGS", "VIEWPORTS", "missing"]

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]
VIEWPORTS = {"desktop": {"width": 1366, "height": 900},
             "phone": {"width": 390, "height": 844}}


def missing(reason: str) -> None:
    """Skip for want of the browser, except under CI, which must run these tests."""

    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium, "
                    "the test extra installs playwright)")
    pytest.skip(reason)
