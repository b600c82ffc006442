"""The dashboard's static files: cached by their version, text compressed.

Pages link each file as ``/static/<name>?v=<version>``, the version being the start of the
SHA-256 of its content. A request naming the current version is answered with
``Cache-Control: public, max-age=31536000, immutable`` (a new file gets a new URL, so a browser
never asks twice); any other request with ``no-cache`` and an ETag (it revalidates with a 304).
CSS, JavaScript and SVG are sent gzip-compressed to a browser that accepts it; the compressed
bytes are made once per file version and kept. Only these files are compressed, never pages:
a page holds the CSRF token next to text a visitor chose, what BREACH needs.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from functools import lru_cache
from pathlib import Path

from flask import Flask, Response, abort, request
from werkzeug.security import safe_join

from webhooks.assets import STATIC

COMPRESSED = (".css", ".js", ".svg")
SERVED = (*COMPRESSED, ".png", ".ico", ".woff2")  # what pyproject.toml ships as webhooks.static
FOREVER = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


@lru_cache(maxsize=128)
def _load(path: str, mtime_ns: int, size: int) -> tuple[bytes, bytes | None, str]:
    """The file's bytes, gzip-compressed (for text), and its version (keyed by mtime and size)."""
    raw = Path(path).read_bytes()
    packed = gzip.compress(raw, compresslevel=9, mtime=0) if path.endswith(COMPRESSED) else None
    return raw, packed, hashlib.sha256(raw).hexdigest()[:12]


def _file(name: str) -> tuple[bytes, bytes | None, str] | None:
    path = safe_join(str(STATIC), name)
    if path is None or not name.endswith(SERVED) or not Path(path).is_file():
        return None
    stat = Path(path).stat()
    return _load(path, stat.st_mtime_ns, stat.st_size)


def asset(name: str) -> str:
    """The URL of a static file with its version: cached for a year, a new version a new URL."""
    found = _file(name)
    return f"/static/{name}?v={found[2] if found else '0'}"


def serve_static(filename: str) -> Response:
    found = _file(filename)
    if found is None:
        abort(404)
    raw, packed, version = found
    gzipped = packed is not None and request.accept_encodings["gzip"] > 0
    response = Response(packed if gzipped else raw,
                        mimetype=mimetypes.guess_type(filename)[0] or "application/octet-stream")
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
    if packed is not None:
        response.vary.add("Accept-Encoding")
    response.set_etag(version + ("-gzip" if gzipped else ""))
    response.headers["Cache-Control"] = FOREVER if request.args.get("v") == version else REVALIDATE
    return response.make_conditional(request)


def serve_static_files(app: Flask) -> None:
    """Point ``/static/<path:filename>`` (endpoint ``static``) at ``serve_static``.

    ``Flask(__name__)`` already owns that rule (meant for ``webhooks/static/``, which does not
    exist); a blueprint rule with the same path would never be reached, so the app's own view is
    replaced. ``/static/`` is open without sign-in (``webhooks/auth.py``).
    """
    if "static" in app.view_functions:
        app.view_functions["static"] = serve_static
    else:  # an app made with static_folder=None
        app.add_url_rule("/static/<path:filename>", endpoint="static", view_func=serve_static)
