"""Redirects cpb follows: http(s) only, and never with credentials to another origin.

urllib's own redirect handler follows `ftp://` too and copies every header,
`Authorization` included, to wherever a server points. Go's HTTP client
(which podman uses) drops `Authorization` when a redirect leaves the domain;
cpb is stricter: the header survives a redirect only to the same scheme,
host and port.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

if TYPE_CHECKING:
    import urllib.request

FOLLOWED_SCHEMES = ("http", "https")
MAX_REDIRECTS = 10


class RedirectRefused(OSError):
    """A redirect to a scheme cpb does not follow (ftp:, file:, data:, ...)."""

    def __init__(self, target: str) -> None:
        super().__init__(f"redirected to {target}, which cpb does not follow "
                         "(only http:// and https://)")
        self.target = target


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


@functools.cache
def _safe_redirect() -> type[urllib.request.BaseHandler]:
    # Built on first use: urllib.request is slow to import, and a no-op run
    # never asks the network anything.
    import urllib.request

    class SafeRedirect(urllib.request.HTTPRedirectHandler):
        max_redirections = MAX_REDIRECTS

        def http_error_302(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                           headers: Any) -> Any:
            # Checked before urllib's own test, which lets ftp: through and
            # reports file: as a bare HTTP 302.
            target = headers.get("location") or headers.get("uri")
            if target:
                target = urljoin(req.full_url, target)
                if urlsplit(target).scheme.lower() not in FOLLOWED_SCHEMES:
                    fp.close()
                    raise RedirectRefused(target)
            return super().http_error_302(req, fp, code, msg, headers)

        http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

        def redirect_request(self, req: urllib.request.Request, fp: Any, code: int,
                             msg: str, headers: Any, newurl: str
                             ) -> urllib.request.Request | None:
            if urlsplit(newurl).scheme.lower() not in FOLLOWED_SCHEMES:
                fp.close()
                raise RedirectRefused(newurl)
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is None:
                return None
            if req.get_method() == "HEAD":
                new.method = "HEAD"  # urllib turns a redirected HEAD into a GET
            if origin(new.full_url) != origin(req.full_url):
                # Credentials were meant for the first origin only.
                new.remove_header("Authorization")
                new.remove_header("Cookie")
            return new

    return SafeRedirect


def opener(*handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """An opener for http(s) only (no file:, ftp:, data:), following redirects safely.

    `handlers` may add an HTTPSHandler with its own SSL context, or a FileHandler
    for a first request to a file: URL (a redirect never leads there)."""
    import urllib.request

    director = urllib.request.OpenerDirector()
    has_https = any(isinstance(h, urllib.request.HTTPSHandler) for h in handlers)
    for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(),
                    *(() if has_https else (urllib.request.HTTPSHandler(),)), *handlers,
                    _safe_redirect()(), urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPErrorProcessor()):
        director.add_handler(handler)
    return director
