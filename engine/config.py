"""The engine's configuration: ``byod.toml`` beside ``schema_versions/`` (all optional),
overridable by ``BYOD_*`` environment variables. Pure data once loaded."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import ConfigError

__all__ = ["AuthConfig", "EngineConfig", "load_config"]


class AuthConfig(BaseModel):
    """The app's identity provider, accepted by every user deployment (one Clerk app)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    issuer_domain: str = "https://clerk.example.com"
    application_id: str = "convex"


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    versions_dir: Path = Path("schema_versions")
    expected_heads: tuple[str, ...] = ()  # empty: exactly one head
    convex_version: str = "1.48.0"
    auth: AuthConfig = Field(default_factory=AuthConfig)
    storage_on: Literal["main", "user"] = "main"
    availability: Literal["everyone", "premium"] = "everyone"
    registry_path: Path = Path(".byod/registry.sqlite3")
    webhook_url: str | None = None
    deploy_timeout_s: float = 300.0
    http_timeout_s: float = 30.0


def load_config(path: Path | None = None, env: dict[str, str] | None = None) -> EngineConfig:
    """Read ``byod.toml`` (if present) then apply ``BYOD_REGISTRY``, ``BYOD_VERSIONS_DIR``,
    ``BYOD_AVAILABILITY`` and ``BYOD_WEBHOOK_URL`` from the environment."""

    env = dict(os.environ if env is None else env)
    path = path or Path(env.get("BYOD_CONFIG", "byod.toml"))
    data: dict = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        data = dict(data.get("byod", data))
    overrides = {
        "registry_path": env.get("BYOD_REGISTRY"),
        "versions_dir": env.get("BYOD_VERSIONS_DIR"),
        "availability": env.get("BYOD_AVAILABILITY"),
        "webhook_url": env.get("BYOD_WEBHOOK_URL"),
    }
    data.update({k: v for k, v in overrides.items() if v})
    try:
        return EngineConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
