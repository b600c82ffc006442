"""Where a clone URL's repository lives on the web: the host-neutral part of a forge's links."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")


@dataclass(frozen=True)
class WebLocation:
    """``scheme://host`` and the repository's path (no ``.git``, no trailing slash)."""

    scheme: str
    host: str
    path: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"


def web_location(clone_url: str) -> WebLocation | None:
    """The web side of an http(s) or ssh clone URL; None for file:// and the unknown."""
    url = clone_url.strip()
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ssh", "git", "git+ssh", "ssh+git"):
            return None
        host = parts.hostname or ""
        path = parts.path
        scheme = "http" if parts.scheme == "http" else "https"
        if scheme == "http" and parts.port:
            host = f"{host}:{parts.port}"
        elif parts.scheme == "https" and parts.port and parts.port != 443:
            host = f"{host}:{parts.port}"
    else:
        match = _SCP_LIKE.match(url)
        if not match:
            return None
        host, path, scheme = match["host"], "/" + match["path"], "https"
    path = path.rstrip("/")
    if path.endswith(".git"):
        path = path[:-4]
    if not host or path.count("/") < 2:
        return None
    return WebLocation(scheme, host, path)
