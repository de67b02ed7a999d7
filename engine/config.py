"""The engine's configuration: one typed settings model fed by three sources, lowest first:

1. the defaults below;
2. ``byod.toml`` (or the file ``BYOD_CONFIG`` names): the ``[byod]`` table with ``[byod.auth]``,
   ``[byod.serve]`` (the service) and ``[byod.alerts.email]`` (alerts by email)
   — or, the older layout, every key at the top level with an ``[auth]`` table;
3. the environment: ``BYOD_REGISTRY``, ``BYOD_VERSIONS_DIR``, ``BYOD_AVAILABILITY``,
   ``BYOD_WEBHOOK_URL`` (an empty variable counts as unset).

Nothing is dropped silently: an unknown key, a table in the wrong place, a wrong type, a
timeout that is not positive, a ``webhook_url`` that is not http(s) and a named config file
that does not exist each raise ``ConfigError`` naming the file and line (or the variable).
Secrets and tool locations (``BYOD_ENCRYPTION_KEY*``, ``BYOD_MAIN_*``, ``BYOD_SERVE_SECRET``,
``BYOD_SMTP_PASSWORD``, ``BYOD_TOOLCHAIN_DIR``) are not settings: they are read where they are used.
Pure data once loaded.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engine.errors import ConfigError

__all__ = ["AlertsConfig", "AuthConfig", "CONFIG_ENV", "ENV_VARS", "EmailConfig", "EngineConfig",
           "REGISTRY_SCHEMES", "ResolvedConfig", "ServeConfig", "find_key_line",
           "is_registry_url", "load_config", "registry_display", "registry_location",
           "resolve_config",
           "state_dir"]

CONFIG_ENV = "BYOD_CONFIG"
DEFAULT_FILE = "byod.toml"
TABLE = "byod"

# Environment variable -> the setting it overrides.
ENV_VARS: dict[str, str] = {
    "BYOD_REGISTRY": "registry_path",
    "BYOD_VERSIONS_DIR": "versions_dir",
    "BYOD_AVAILABILITY": "availability",
    "BYOD_WEBHOOK_URL": "webhook_url",
}


# Registry locations that are not files: a PostgreSQL server (``postgresql://`` or
# ``postgres://`` URL) or the main Convex deployment (``convex:main``).
REGISTRY_SCHEMES = ("postgresql://", "postgres://", "convex:")
# Where side files go (reports, push payloads) when the registry is not a file.
DEFAULT_STATE_DIR = Path(".byod")


def is_registry_url(location: object) -> bool:
    """A server registry (``postgresql://…``, ``convex:main``), not a SQLite file path."""

    return isinstance(location, str) and location.lower().startswith(REGISTRY_SCHEMES)


def registry_location(config_or_location: Any) -> str:
    """The registry location as written: a file path, a ``postgresql://`` URL (which may
    carry a password: print ``registry_display`` instead) or ``convex:main``."""

    value = getattr(config_or_location, "registry_path", config_or_location)
    return value if isinstance(value, str) else str(Path(value))


def registry_display(config_or_location: Any) -> str:
    """The registry location fit to print: a file path as it is; a server URL without its
    password (nor its query, where libpq also accepts one): ``postgresql://byod@db:5432/app``."""

    location = registry_location(config_or_location)
    if not is_registry_url(location) or "://" not in location:
        return location
    parts = urlsplit(location)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    user = f"{unquote(parts.username)}@" if parts.username else ""
    host = parts.hostname or ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def state_dir(config: Any) -> Path:
    """The directory for the engine's side files (reports, push payloads): the registry
    file's directory, or ``.byod`` when the registry is a server."""

    location = getattr(config, "registry_path", config)
    if is_registry_url(location):
        return DEFAULT_STATE_DIR
    return Path(location).parent


# A timeout: a number (a quoted one is refused) greater than zero.
Seconds = Annotated[float, Field(gt=0, strict=True)]


class AuthConfig(BaseModel):
    """The app's identity provider, accepted by every user deployment (one Clerk app)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    issuer_domain: str = "https://clerk.example.com"
    application_id: str = "convex"


def http_url(value: str) -> str:
    """``value`` when it is an http(s) URL with a host; the error never echoes the URL (a
    webhook URL often carries a token)."""

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(f"must be an http:// or https:// URL with a host ({got})")
    return value


class ServeConfig(BaseModel):
    """``[serve]``: the service (``byod serve``). Its signing secret is not a setting: it is
    read from ``BYOD_SERVE_SECRET`` where the service starts (``engine.serve.settings``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535, strict=True)] = 8000
    # the URL users reach the service at (behind a proxy); links are built from it
    public_url: str | None = None
    # the kill switch: false refuses new connections, existing ones keep working
    enabled: bool = True
    upgrade_url: str | None = None
    monitor_interval_s: Seconds = 300.0
    user_token_ttl_s: Seconds = 900.0
    # credential tests allowed per user, and per API token (an app backend tests for many
    # users), in any 60 seconds
    credential_tests_per_minute: Annotated[int, Field(ge=1, strict=True)] = 10
    credential_tests_per_token_per_minute: Annotated[int, Field(ge=1, strict=True)] = 300
    # app functions (``module:name`` globs) that run on the main deployment
    main_functions: tuple[str, ...] = ()
    job_claim_ttl_s: Seconds = 30.0
    # accept plain http credentials for loopback deployments (local ones: tests, the demo)
    allow_insecure_local: bool = False
    # origins of the app allowed to embed the end-user pages in an iframe (empty: only the
    # service itself); when set, the page session cookie is SameSite=None; Secure
    frame_ancestors: tuple[str, ...] = ()

    @field_validator("frame_ancestors")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") \
                    or parts.query or parts.fragment:
                raise ValueError(f"{origin!r} is not an https origin (https://app.example.com)")
        return tuple(o.rstrip("/") for o in value)

    @field_validator("public_url", "upgrade_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value).rstrip("/")


class EmailConfig(BaseModel):
    """``[alerts.email]``: alerts by email over SMTP. The password is not a setting: it is
    read from ``BYOD_SMTP_PASSWORD`` where mail is sent. No ``smtp_host``: no email."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535, strict=True)] = 587
    username: str | None = None
    from_address: str = "byod@localhost"
    to_addresses: tuple[str, ...] = ()
    starttls: bool = True
    timeout_s: Seconds = 30.0

    @field_validator("from_address", "to_addresses")
    @classmethod
    def _addresses(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for address in (value,) if isinstance(value, str) else value:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+", address):
                raise ValueError(f"{address!r} is not an email address")
        return value


class AlertsConfig(BaseModel):
    """``[alerts]``: where alerts go besides ``webhook_url``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    email: EmailConfig = Field(default_factory=EmailConfig)


class EngineConfig(BaseSettings):
    """The effective settings. Constructed directly it takes only its arguments (and the
    defaults); ``load_config`` adds ``byod.toml`` and the environment."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    versions_dir: Path = Path("schema_versions")
    expected_heads: tuple[str, ...] = ()  # empty: exactly one head
    convex_version: str = "1.48.0"
    auth: AuthConfig = Field(default_factory=AuthConfig)
    storage_on: Literal["main", "user"] = "main"
    availability: Literal["everyone", "premium"] = "everyone"
    # a SQLite file (a Path), or a server registry kept as written (a str: a Path would
    # fold the URL's "//"); repr=False: a PostgreSQL URL may carry a password
    registry_path: Path | str = Field(default=Path(".byod/registry.sqlite3"), repr=False)
    webhook_url: str | None = None
    deploy_timeout_s: Seconds = 300.0
    http_timeout_s: Seconds = 30.0
    # warning codes ``byod check`` does not report in any version (docs/lint-codes.md)
    lint_ignore: tuple[str, ...] = ()
    # the app's own Convex functions shipped in every user bundle (None: none); a version
    # with a snapshot in ``<functions_dir>.pinned/<version id>/`` ships that instead
    functions_dir: Path | None = None
    serve: ServeConfig = Field(default_factory=ServeConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    @field_validator("lint_ignore")
    @classmethod
    def _warning_codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in value if not re.fullmatch(r"BYOD-W[0-9]{3}", c)]
        if bad:
            raise ValueError(f"only warning codes (BYOD-Wnnn) can be ignored, not {bad[0]!r}")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value)

    @field_validator("registry_path", mode="before")
    @classmethod
    def _registry(cls, value: Any) -> Any:
        """A URL stays a str; anything else is a file path. Never echoes the value."""

        if is_registry_url(value):
            return str(value)
        if isinstance(value, str) and "://" in value:
            scheme = value.split("://", 1)[0]
            raise ValueError(f"registry location {scheme}://… is not supported: give a file "
                             "path (SQLite), a postgresql:// URL or convex:main")
        return Path(value) if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the arguments: reading the file and the environment is ``load_config``'s
        # job, so that it can say where every value came from.
        return (init_settings,)


# -- locating keys in the text ---------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*(?P<name>[^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*(?P<key>(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
                  r"""(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def find_key_line(text: str, path: tuple[str, ...]) -> int | None:
    """The 1-based line of the key (or table header) at ``path`` — e.g. ``("byod",
    "auth", "issuer_domain")`` — in TOML ``text``; ``None`` if it is not written there.
    A key inside an inline table resolves to the line of the key holding the table, and a
    key of a table that is never named in a header to the first key under it."""

    table: tuple[str, ...] = ()
    best: int | None = None
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline is not None:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            table = _dotted(header.group("name"))
            if table == path:
                return number
            if best is None and table[:len(path)] == path:
                best = number
            continue
        key = _KEY.match(line)
        if key:
            full = table + _dotted(key.group("key"))
            if full == path:
                return number
            # a prefix: the key holds an inline table or dotted keys with the one sought
            if best is None and (full[:len(path)] == path or path[:len(full)] == full):
                best = number
            rest = line[key.end():]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
    return best


# -- the sources -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    prefix: tuple[str, ...]  # where the settings sit in the file: ("byod",) or ()


class TomlFileSource(PydanticBaseSettingsSource):
    """``byod.toml``: the settings table of the file, after its layout is checked."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path, text: str):
        super().__init__(settings_cls)
        self.path = path
        self.text = text
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        self.layout, self.values = self._settings_of(data)

    def where(self, keys: tuple[str, ...]) -> str:
        line = find_key_line(self.text, self.layout.prefix + keys)
        return f"{self.path}:{line}" if line else str(self.path)

    def _error(self, keys: tuple[str, ...], problem: str) -> ConfigError:
        line = find_key_line(self.text, keys)
        return ConfigError(f"{self.path}:{line}: {problem}" if line else f"{self.path}: {problem}")

    def _settings_of(self, data: dict[str, Any]) -> tuple[_Layout, dict[str, Any]]:
        fields = self.settings_cls.model_fields
        if TABLE not in data:  # the older layout: every key at the top level
            return _Layout(()), data
        settings = data[TABLE]
        if not isinstance(settings, dict):
            raise self._error((TABLE,), f"{TABLE!r} must be a table ([{TABLE}])")
        for key, value in data.items():
            if key == TABLE:
                continue
            if isinstance(value, dict) and key in fields:
                raise self._error((key,), f"[{key}] is a top-level table, outside [{TABLE}]: "
                                          f"did you mean [{TABLE}.{key}]?")
            if key in fields:
                raise self._error((key,), f"{key!r} is outside the [{TABLE}] table: move it "
                                          f"under [{TABLE}]")
            kind = "table" if isinstance(value, dict) else "key"
            raise self._error((key,), f"unknown top-level {kind} {key!r}: every setting goes "
                                      f"in the [{TABLE}] table")
        return _Layout((TABLE,)), dict(settings)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


class MappedEnvSource(PydanticBaseSettingsSource):
    """The ``BYOD_*`` variables of ``ENV_VARS`` (empty ones count as unset)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]):
        super().__init__(settings_cls)
        self.variables = {name: field_name for name, field_name in ENV_VARS.items()
                          if env.get(name)}
        self.values = {field_name: env[name] for name, field_name in self.variables.items()}

    def variable_of(self, field_name: str) -> str | None:
        return next((n for n, f in self.variables.items() if f == field_name), None)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


# -- resolving -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedConfig:
    """The config and where each value came from: ``sources`` maps a dotted setting
    (``auth.issuer_domain``) to ``default``, ``file <path>:<line>`` or ``env <VAR>``."""

    config: EngineConfig
    file: Path | None
    sources: dict[str, str] = field(default_factory=dict)


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out.extend(_leaves(kind, prefix + (name,)))
        else:
            out.append(prefix + (name,))
    return out


def _present(values: Mapping[str, Any], keys: tuple[str, ...]) -> bool:
    node: Any = values
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def _config_file(path: Path | None, env: Mapping[str, str]) -> Path | None:
    """The file to read: ``path``, else ``BYOD_CONFIG``, else ``byod.toml`` if present. A
    named file that is missing is an error; a missing ``byod.toml`` means the defaults."""

    if path is not None:
        named, how = Path(path), ""
    elif env.get(CONFIG_ENV):
        named, how = Path(env[CONFIG_ENV]), f" (named by {CONFIG_ENV})"
    else:
        default = Path(DEFAULT_FILE)
        return default if default.is_file() else None
    if not named.exists():
        raise ConfigError(f"{named}: the config file does not exist{how}")
    if named.is_dir():
        raise ConfigError(f"{named}: is a directory, not a config file")
    return named


def _problem(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def resolve_config(path: Path | None = None,
                   env: Mapping[str, str] | None = None) -> ResolvedConfig:
    """Defaults < ``byod.toml`` (``path``, else ``BYOD_CONFIG``, else ``./byod.toml`` when
    present) < ``BYOD_*`` variables; each value with its source. ``ConfigError`` on any
    problem, naming the file and line or the variable."""

    env = dict(os.environ if env is None else env)
    file = _config_file(path, env)
    file_source: TomlFileSource | None = None
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read the config file: {exc}") from None
        file_source = TomlFileSource(EngineConfig, file, text)
    env_source = MappedEnvSource(EngineConfig, env)
    file_values = file_source() if file_source else {}
    values = {**file_values, **env_source()}  # the environment wins, key by key

    try:
        config = EngineConfig(**values)
    except ValidationError as exc:
        raise _config_error(exc, file_source, env_source) from None

    sources: dict[str, str] = {}
    for leaf in _leaves(EngineConfig):
        variable = env_source.variable_of(leaf[0])
        if variable is not None:
            sources[".".join(leaf)] = f"env {variable}"
        elif file_source is not None and _present(file_values, leaf):
            sources[".".join(leaf)] = f"file {file_source.where(leaf)}"
        else:
            sources[".".join(leaf)] = "default"
    return ResolvedConfig(config, file, sources)


def _owner_of(loc: tuple[str, ...]) -> type[BaseModel]:
    """The settings model that holds the table at ``loc`` (``("serve",)`` -> ``ServeConfig``)."""

    owner: type[BaseModel] = EngineConfig
    for part in loc:
        info = owner.model_fields.get(part)
        kind = info.annotation if info is not None else None
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            break
        owner = kind
    return owner


def _config_error(exc: ValidationError, file_source: TomlFileSource | None,
                  env_source: MappedEnvSource) -> ConfigError:
    problems: list[str] = []
    for error in exc.errors():
        loc = tuple(str(p) for p in error["loc"])
        dotted = ".".join(loc)
        variable = env_source.variable_of(loc[0]) if loc else None
        if error["type"] == "extra_forbidden":
            owner = _owner_of(loc[:-1])
            close = difflib.get_close_matches(loc[-1], list(owner.model_fields), n=1)
            problem = f"unknown key {dotted!r}" + (f" (did you mean {close[0]!r}?)"
                                                   if close else "")
        else:
            problem = f"{dotted}: {_problem(error)}"
        if variable is not None:
            problems.append(f"{variable}: {problem}")
        elif file_source is not None:
            problems.append(f"{file_source.where(loc)}: {problem}")
        else:
            problems.append(problem)
    return ConfigError("; ".join(problems))


def load_config(path: Path | None = None, env: dict[str, str] | None = None) -> EngineConfig:
    """The effective config: defaults < ``byod.toml`` (``path``, else the file ``BYOD_CONFIG``
    names, else ``./byod.toml`` when present) < ``BYOD_REGISTRY``, ``BYOD_VERSIONS_DIR``,
    ``BYOD_AVAILABILITY`` and ``BYOD_WEBHOOK_URL``. ``ConfigError`` on any problem."""

    return resolve_config(path, env).config
