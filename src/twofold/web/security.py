"""Who may talk to the panel: requests must carry the token made at start (once in the
address, then a cookie), name the panel's own host (no DNS rebinding), and change state
only by POST with the page's anti-forgery field or header."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE = ("GET", "HEAD")
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass
class Secret:
    """The token of one panel start and what follows from it."""

    hosts: set[str]  # Host header values accepted, e.g. {"127.0.0.1:8765"}
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    cookie: str = "twofold_panel"

    @property
    def csrf(self) -> str:
        """The anti-forgery value pages put in every form."""
        return hmac.new(self.token.encode(), b"csrf", hashlib.sha256).hexdigest()

    def matches(self, given: str | None) -> bool:
        """True when `given` is the token (compared in constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def refuse(status: int, text: str) -> Response:
    """A plain refusal saying what is wrong."""
    return PlainTextResponse(text + "\n", status_code=status)


class Guard:
    """ASGI middleware applying the rules above to every HTTP request."""

    def __init__(self, app: ASGIApp, secret: Secret) -> None:
        self.app = app
        self.secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":  # the body is read here once, and replayed
            body = await Request(scope, receive).body()
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            receive = replay
        answer = await self.check(Request(scope, receive))
        if answer is not None:
            await answer(scope, receive, send)
            return
        if scope["method"] == "POST":
            sent = False
        await self.app(scope, receive, send)

    async def check(self, request: Request) -> Response | None:
        """None when the request may go on, else the refusal (or the redirect that drops
        the token from the address once the cookie is set)."""
        s = self.secret
        host = request.headers.get("host", "")
        if host not in s.hosts:
            return refuse(421, f"refused: this panel answers only to {sorted(s.hosts)[0]} "
                          f"(Host header {host!r})")
        in_url = request.query_params.get("token")
        if s.matches(in_url) and request.method in SAFE:
            url: URL = request.url.remove_query_params("token")
            target = url.path + (f"?{url.query}" if url.query else "")
            redirect = RedirectResponse(target, status_code=303)
            redirect.set_cookie(s.cookie, s.token, httponly=True, samesite="strict",
                                path="/")
            return redirect
        if not (s.matches(request.cookies.get(s.cookie))
                or s.matches(request.headers.get("x-twofold-token"))):
            return refuse(403, "refused: no valid token. Open the address `twofold panel` "
                          "printed (it changes at each start).")
        if request.method in SAFE:
            return None
        if request.method != "POST":
            return refuse(405, "only GET and POST are used")
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc not in s.hosts:
            return refuse(403, f"refused: a request from another site ({origin})")
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
        if given is None or not hmac.compare_digest(given.encode(), s.csrf.encode()):
            return refuse(403, "refused: the form's anti-forgery field is missing or wrong; "
                          "reload the page and try again")
        return None
