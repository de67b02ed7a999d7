"""The chaos suite's one world (a local fleet, a registry, a pool of users on the head),
shared by every case of the session, and the seed that replays a run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .world import SEED_ENV, World, chaos_seed

_STATE: dict[str, Any] = {}


def _toolchain_missing() -> str | None:
    import shutil

    from engine.convex.toolchain import Toolchain

    if shutil.which("node") is None:
        return "the chaos suite needs Node.js"
    try:
        root = Toolchain.find().root
    except Exception as exc:  # noqa: BLE001 - any failure to find it means: skip
        return f"the chaos suite needs the pinned npm toolchain ({exc})"
    if not (root / "node_modules" / ".bin" / "convex").exists():
        return "the chaos suite needs the pinned npm toolchain: run `byod toolchain install`"
    return None


@pytest.fixture(scope="session")
def chaos_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    reason = _toolchain_missing()
    if reason:
        pytest.skip(reason)
    seed = chaos_seed()
    _STATE["seed"] = seed
    world = World(tmp_path_factory.mktemp("chaos"), seed)
    _STATE["world"] = world
    try:
        from .test_chaos import POOL  # the users on the head the cases take

        world.fill_pool(POOL)
        yield world
    finally:
        world.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and "seed" in _STATE:
        report.sections.append(
            ("chaos seed", f"replay this run with {SEED_ENV}={_STATE['seed']}"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    world = _STATE.get("world")
    if world is None:
        return
    delivered = sum(1 for k in world.kills if k.killed)
    terminalreporter.write_line(
        f"chaos: seed {world.seed} ({SEED_ENV}={world.seed} replays it); {delivered} SIGKILLs "
        f"delivered in {len(world.kills)} attacks")
    for kill in world.kills:
        terminalreporter.write_line(
            f"  {kill.case:<26} {kill.point:<34} "
            f"{'killed after %.2fs' % kill.after_s if kill.killed else 'ended first':<20} "
            f"recovery exit {kill.recovery_code}")
