"""The premium gate: who may *start* using their own database.

Availability comes from the engine's config: ``everyone`` (no check) or ``premium``. With
``premium`` a user must be entitled, either by an app-supplied callable (the app's billing
system is then the source of truth) or, when the app supplies none, by the registry's
``entitled`` column (``byod entitle --user ID``).

The gate is consulted only when a connection starts. Routing, health and test-connection
never consult it, so closing the gate never strands a user who is already connected; a user
already deployed may also re-connect (new credentials) or retry while the gate is closed.
"""

from __future__ import annotations

from typing import Callable, TypeGuard

from engine.config import EngineConfig
from engine.errors import NotEntitled
from engine.ports.registry import RegistryStore, UserConfig

__all__ = ["Entitlement", "check_entitled", "is_entitled", "grandfathered"]

Entitlement = Callable[[str], bool]


def grandfathered(user: UserConfig | None) -> TypeGuard[UserConfig]:
    """A user who already has a working BYOD setup keeps it whatever the gate says.
    (A type guard: when true, ``user`` is known not to be ``None``.)"""

    return (user is not None and user.schema_version is not None
            and user.connection_status in ("connected", "error"))


def is_entitled(user_id: str, *, config: EngineConfig, store: RegistryStore,
                entitlement: Entitlement | None = None) -> bool:
    if config.availability == "everyone":
        return True
    user = store.find_user(user_id)
    if grandfathered(user):
        return True
    if entitlement is not None:
        return bool(entitlement(user_id))
    return bool(user is not None and user.entitled)


def check_entitled(user_id: str, *, config: EngineConfig, store: RegistryStore,
                   entitlement: Entitlement | None = None) -> None:
    """Raise ``NotEntitled`` when the gate is closed to this user."""

    if not is_entitled(user_id, config=config, store=store, entitlement=entitlement):
        raise NotEntitled(user_id)
