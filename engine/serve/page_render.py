"""What the end-user pages and the dashboard share: the jinja2 environment over
``templates/serve/``, times as ISO 8601, and the headers every page is sent with.

Why a CSP instead of ``X-Frame-Options``: the settings pages are meant to be embedded in the
app (an iframe), so framing is allowed for the origins ``frame_ancestors`` names (default:
the service itself) rather than refused outright; scripts and styles come from the service
only (``/static/serve``), never inline.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import jinja2
from fastapi import Request

from engine.assets import templates_dir

__all__ = ["STATIC_URL", "csp", "iso", "page_headers", "render"]

DEFAULT_FRAME_ANCESTORS = "'self'"
STATIC_URL = "/static"  # templates/serve/static, mounted by create_app


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True, undefined=jinja2.ChainableUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def iso(at: Any) -> str | None:
    """A Unix time (or an ISO string) as ISO 8601 UTC, None for none."""

    if at is None or at == "":
        return None
    if isinstance(at, str):
        return at
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(at)))
    except (TypeError, ValueError, OverflowError):
        return None


def frame_ancestors(request: Request) -> str:
    """The origins allowed to embed the pages: ``settings.frame_ancestors`` (a string or a
    list of origins) when the service's settings have it, else the service itself."""

    service = getattr(request.app.state, "service", None)
    value = getattr(getattr(service, "settings", None), "frame_ancestors", None)
    if not value:
        return DEFAULT_FRAME_ANCESTORS
    if isinstance(value, str):
        return value
    return " ".join([DEFAULT_FRAME_ANCESTORS, *(str(v) for v in value)])


def csp(request: Request) -> str:
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
            f"frame-ancestors {frame_ancestors(request)}")


def page_headers(request: Request) -> dict[str, str]:
    """Headers for a page with a user's data: not cached, not sniffed, no referrer, the CSP."""

    return {"Content-Security-Policy": csp(request), "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
