"""Who bin/edit answers: its own page and scripts holding its token, on the address it serves.

Every request passes three checks before Flask routes it (``Guard.refusal``), the way Jupyter
guards its server:

- Host: the ``Host`` header must name the server (127.0.0.1, localhost, [::1] or ``--host``,
  with the port). A web page that points its own domain name at 127.0.0.1 (DNS rebinding) sends
  its own name and is refused (403), so it can never read an answer.
- Token: a random token per start (``secrets``, 256 bits) or ``--token``; the URL printed on
  stdout carries it (``/?token=...``), and a request giving it that way gets it back as an
  HttpOnly, SameSite=Strict cookie named after the port (two servers on one machine keep their
  own). Scripts send ``Authorization: token ...``. Missing or wrong: 401. ``--no_token``
  switches this one check off (loudly).
- State changes (any method but GET/HEAD/OPTIONS): ``Content-Type: application/json``
  (``multipart/form-data`` for ``/api/uploads``), else 415, and an ``Origin`` equal to the
  server's own, else 403. A browser always sends Origin with such a request, so one that
  carries only the cookie must send it; a script with the token in a header need not. This is
  what stops another page of this machine (another port is another origin, yet the same site,
  so SameSite alone would send the cookie) from opening, editing or saving.

Secrets and origins are compared with ``hmac.compare_digest`` (time independent of where they
differ). Every answer also says: no framing, no cross-origin embedding, no MIME sniffing, no
Referer (the page's URL may hold the token).
"""

import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Any

TOKEN_ENV = "P2PHD_EDIT_TOKEN"  # a fixed token that `ps` cannot show (--token can be seen)
TOKEN_BYTES = 32  # a generated token: 256 random bits, 43 URL-safe characters
TOKEN_RE = re.compile(r"[A-Za-z0-9_.~-]{16,256}")  # given tokens: URL-safe, at least 16 chars
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "")  # --host values meaning every address of the machine
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MULTIPART_PATHS = frozenset({"/api/uploads"})
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
}


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def check_token(token: str) -> str:
    """A token given by the user: ValueError with the reason unless usable in a URL and a cookie."""
    if not TOKEN_RE.fullmatch(token):
        raise ValueError(
            "a token is 16 to 256 characters of A-Z a-z 0-9 _ . ~ - (e.g. "
            'python3 -c "import secrets; print(secrets.token_urlsafe())")'
        )
    return token


def url_host(host: str) -> str:
    """An address as a URL names it (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


@dataclass
class Guard:
    """The server's token ('' with --no_token), the address it listens on and its port (set
    once bound: --port 0 picks one)."""

    token: str
    host: str
    port: int = 0

    @property
    def cookie(self) -> str:
        return f"p2phd-edit-{self.port}"

    def url(self) -> str:
        """The URL printed on stdout: opening it logs the browser in."""
        base = f"http://{url_host(self.host or '0.0.0.0')}:{self.port}/"
        return f"{base}?token={self.token}" if self.token else base

    def host_allowed(self, header: str) -> bool:
        """Does a Host header name this server? Names, with the port (HTTP omits port 80)."""
        header = header.strip().lower()
        names = {*LOOPBACK_NAMES, url_host(self.host.lower())}
        ports = {str(self.port), *(("",) if self.port == 80 else ())}
        name, _, port = header.rpartition(":") if not header.endswith("]") else (header, "", "")
        if not name or "]" in port:  # no port given ("localhost", "[::1]")
            name, port = header, ""
        if port not in ports:
            return False
        # On every address, the machine's own addresses are reached by number; a name other
        # than localhost could be any web site's (rebinding), so it is refused.
        return name in names or (self.host in WILDCARDS and _is_ip(name))

    def token_of(self, req: Any) -> tuple[str, str]:
        """(token the request gives, how: 'header', 'query', 'cookie' or '')."""
        auth = req.headers.get("Authorization", "")
        if auth[:6].lower() == "token ":
            return auth[6:].strip(), "header"
        if "token" in req.args:
            return req.args.get("token", ""), "query"
        if self.cookie in req.cookies:
            return req.cookies.get(self.cookie, ""), "cookie"
        return "", ""

    def refusal(self, req: Any) -> tuple[int, str] | None:
        """(status, one-line reason) to refuse ``req`` with, or None to serve it."""
        host = req.headers.get("Host", "")
        if not self.host_allowed(host):
            return 403, (
                f"Host {host[:80]!r} is not this server's address: open "
                f"http://127.0.0.1:{self.port}/ (or --host's) with its token"
            )
        given, how = self.token_of(req)
        if self.token and not _equal(given, self.token):
            what = "a wrong token" if how else "no token"
            return 401, (
                f"{what}: open the URL bin/edit printed (.../?token=...) or send the header "
                "'Authorization: token TOKEN'"
            )
        if req.method in SAFE_METHODS:
            return None
        origin = req.headers.get("Origin")
        if origin is None and how == "cookie":
            return 403, "a browser request that changes something must carry its Origin"
        if origin is not None and not _equal(origin.lower(), f"http://{host.strip().lower()}"):
            return 403, f"Origin {origin[:80]!r} is not this server: refused"
        wanted = "multipart/form-data" if req.path in MULTIPART_PATHS else "application/json"
        if req.mimetype != wanted:
            return 415, f"{req.method} {req.path} takes Content-Type: {wanted}"
        return None

    def after(self, req: Any, response: Any) -> Any:
        """Security headers on every answer; a token given in the URL becomes the cookie."""
        response.headers.update(HEADERS)
        given, how = self.token_of(req)
        if how == "query" and self.token and _equal(given, self.token):
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict", path="/")
        return response
