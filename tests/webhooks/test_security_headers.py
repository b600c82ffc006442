"""Security headers on every answer, and static files compressed and cached by their version."""

from __future__ import annotations

import gzip
import re

import pytest


@pytest.mark.parametrize("path", ["/", "/login", "/triggers", "/api/builds", "/healthz", "/no/such/page"])
def test_every_answer_carries_the_security_headers(client, path):
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/", "/triggers", "/overview", "/inbound", "/deliveries", "/deployments",
                                  "/triggers/new", "/login"])
def test_no_page_has_inline_script_or_style_the_policy_would_block(client, path):
    page = client.get(path).text
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "an inline script"
    assert not re.search(r"\sstyle=", page) and "<style" not in page
    assert not re.search(r"\son[a-z]+=", page), "an inline event handler"


def test_static_files_are_compressed_and_cached_by_their_version(client):
    page = client.get("/").text
    url = re.search(r'href="(/static/app\.css\?v=[0-9a-f]{12})"', page).group(1)
    versioned = client.get(url, headers={"Accept-Encoding": "gzip, br"})
    assert versioned.status_code == 200
    assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in versioned.headers["Vary"]
    css = gzip.decompress(versioned.data)
    assert b".pill" in css and len(versioned.data) < len(css) / 3
    assert versioned.headers["Content-Type"].startswith("text/css")
    # without gzip, the plain file; an old or missing version must be checked again
    plain = client.get("/static/app.css?v=000000000000")
    assert "Content-Encoding" not in plain.headers and plain.data == css
    assert plain.headers["Cache-Control"] == "no-cache"
    again = client.get("/static/app.css", headers={"If-None-Match": plain.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/static/__init__.py").status_code == 404
    assert client.get("/static/../webhooks/__init__.py").status_code == 404
