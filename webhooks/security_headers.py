"""Headers on every answer that keep the pages from being framed, sniffed or scripted.

The Content-Security-Policy allows scripts, styles, images and connections from this site
only: no inline ``<script>``, no ``style="..."`` attribute (the overview's bars are SVG), no
``eval``. ``frame-ancestors 'none'`` (and ``X-Frame-Options: DENY`` for old browsers) stops
clickjacking of the buttons; ``nosniff`` keeps a log or a JSON answer from being run as a
script; the referrer stays on this site. A view may set its own ``Referrer-Policy`` (the page
that shows a new trigger's secret sends none at all).
"""

from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000"


def headers_for(https: bool) -> tuple[tuple[str, str], ...]:
    """The headers every answer carries (for an answer made without Flask: ``webhooks/hooks.py``)."""
    return (*HEADERS.items(), *((("Strict-Transport-Security", HSTS),) if https else ()))


def register(app: Flask, https: bool) -> None:
    """Add the headers to every response; ``Strict-Transport-Security`` too when served over HTTPS."""

    headers = headers_for(https)

    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in headers:
            response.headers.setdefault(name, value)
        return response
