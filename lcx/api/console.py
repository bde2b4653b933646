"""The agent and supervisor console (API.md section 10): static files under ``/console/``.

The files live in ``lcx/console/static`` (plain ES modules, no build step) and are read
once, when the blueprint is built. Every answer carries:

* ``Cache-Control: no-cache`` with a strong ``ETag`` (a hash of the bytes): browsers keep
  the files and revalidate them, a 304 costs no body, and a new lcx version is picked up on
  the next load (the modules import each other by fixed names, so they must not be
  cached past a release);
* a ``Content-Security-Policy`` that allows only lcx's own origin (scripts, styles,
  sockets, images; ``server.public_url``'s origin too when it differs, since signed
  attachment URLs point there), no framing, no plugins, no inline script;
* ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` (the sign-in URL
  carries a token).

``/`` and ``/console`` redirect to ``/console/`` (the query kept, so ``/?token=`` signs
in; ``/`` with 302, since a deployment may put another page there). Only the file names
that exist are served: anything else under ``/console/`` is 404, and more specific routes
registered by other blueprints (the demo's ``/console/try``) win over the ``/console/<name>`` rule.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from lcx.errors import NotFound

__all__ = ["CONSOLE_PATH", "STATIC_DIR", "console_blueprint", "console_url",
           "content_security_policy"]

CONSOLE_PATH = "/console/"
STATIC_DIR = Path(__file__).resolve().parent.parent / "console" / "static"
INDEX = "index.html"

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml",
          ".json": "application/json; charset=utf-8"}


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    etag: str


def _load(directory: Path) -> dict[str, _File]:
    files: dict[str, _File] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        body = path.read_bytes()
        content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] \
            or "application/octet-stream"
        files[path.name] = _File(body, content_type,
                                 '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return files


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def content_security_policy(public_url: str | None = None) -> str:
    """The console's policy: lcx's own origin only (and ``public_url``'s, if given)."""
    extra = _origin(public_url or "")
    images = "'self' blob: data:" + (f" {extra}" if extra else "")
    links = "'self'" + (f" {extra}" if extra else "")
    return "; ".join((
        "default-src 'none'", "script-src 'self'", "style-src 'self'",
        f"img-src {images}", "font-src 'self'", f"connect-src {links}",
        "media-src 'self' data:", "manifest-src 'self'", "base-uri 'none'",
        "form-action 'self'", "frame-ancestors 'none'", "object-src 'none'"))


def console_url(base_url: str, token: str | None = None) -> str:
    """The console's address under ``base_url``, with a sign-in token when given."""
    url = base_url.rstrip("/") + CONSOLE_PATH
    return url if token is None else f"{url}?token={token}"


def console_blueprint(public_url: str | None = None,
                      directory: Path = STATIC_DIR) -> Blueprint:
    """The blueprint serving the console's files (see the module docstring)."""
    files = _load(directory)
    headers = {"Cache-Control": "no-cache",
               "Content-Security-Policy": content_security_policy(public_url),
               "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
               "Cross-Origin-Opener-Policy": "same-origin"}
    blueprint = Blueprint("console", __name__)

    def answer(name: str) -> TrioResponse:
        found = files.get(name)
        if found is None:
            raise NotFound(f"no console file {name!r}")
        if found.etag in request.headers.get("If-None-Match", ""):
            return TrioResponse(b"", status=304, headers={**headers, "ETag": found.etag})
        body = b"" if request.method == "HEAD" else found.body
        response = TrioResponse(body, status=200, headers={**headers, "ETag": found.etag},
                                content_type=found.content_type)
        if request.method == "HEAD":
            response.content_length = len(found.body)
        return response

    def redirect(status: int) -> TrioResponse:
        query = request.query_string.decode("latin-1")
        location = CONSOLE_PATH + (f"?{query}" if query else "")
        return TrioResponse(b"", status=status, headers={"Location": location})

    @blueprint.get("/")
    async def site_root() -> TrioResponse:
        return redirect(302)

    @blueprint.get("/console")
    async def console_root() -> TrioResponse:
        return redirect(308)

    @blueprint.get(CONSOLE_PATH)
    async def console_index() -> TrioResponse:
        return answer(INDEX)

    @blueprint.get(CONSOLE_PATH + "<name>")
    async def console_file(name: str) -> TrioResponse:
        return answer(name)

    return blueprint
