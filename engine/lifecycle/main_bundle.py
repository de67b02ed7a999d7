"""Is the main deployment ready for a data copy? One cheap probe, made before anything is
written or any user is blocked.

A migrate-disconnect imports into main with ``byodMain:importPageOnce`` and a copy from main
exports with ``byodMain:exportOwnedPage``; only the *main* bundle (``byod deploy VERSION
--target main``) has these functions. A main deployment that runs a user bundle (or no
byod bundle) answers ``Could not find function`` for them, so without this probe the copy
would start, block the user and stop at its first page.
"""

from __future__ import annotations

from engine.errors import SAFETY_EXIT_CODE, ByodError, DeploymentError
from engine.fleet.health_states import nothing_deployed
from engine.ports.deployment import FunctionRunner

__all__ = ["MainNotReady", "PROBE_FUNCTION", "deploy_main_command", "require_main_bundle"]

PROBE_FUNCTION = "byodMain:getByIds"
"""A read-only function of the main bundle; asked for no ids it reads nothing."""

_PROBE_ARGS = {"table": "byodVersions", "ids": []}  # an engine table every bundle declares


class MainNotReady(ByodError):
    """(exit 3) The main deployment lacks the main bundle's functions: nothing was changed;
    deploying the main bundle is what lets the command go ahead."""

    exit_code = SAFETY_EXIT_CODE


def deploy_main_command(version: str | None) -> str:
    """The command that puts ``version``'s main bundle on the main deployment."""

    return f"byod deploy {version or 'head'} --target main"


def require_main_bundle(main: FunctionRunner, *, version: str | None, purpose: str) -> None:
    """Raise ``MainNotReady`` (naming the command to run) unless ``main`` answers the main
    bundle's probe function. Any other failure (unreachable, a revoked key) propagates as
    the deployment error it is."""

    try:
        main.query(PROBE_FUNCTION, dict(_PROBE_ARGS))
    except DeploymentError as exc:
        if not nothing_deployed(exc):
            raise
        raise MainNotReady(
            f"the main deployment has no main bundle ({PROBE_FUNCTION} is missing: it runs "
            f"a user bundle or no byod bundle), so {purpose} cannot run; nothing was "
            f"changed. Deploy the main bundle first: `{deploy_main_command(version)}` "
            "(main is addressed by BYOD_MAIN_URL and BYOD_MAIN_ADMIN_KEY)") from None
