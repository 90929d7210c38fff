"""What every answer of the local web page is made of.

The headers sent with each answer (collector/web/app.py adds them), the
page template (static/page.html, split once at its slots), the cookies and
the redirect, and :class:`Pages`: the session a request carries and the
page drawn for it. The route groups (collector/web/login.py,
collector/web/config_editor.py, collector/web/app.py) share one
:class:`Pages`.
"""

from __future__ import annotations

import html
import re
from importlib import resources

from collector.web.auth import Session, Sessions
from collector.web.http import RequestHead, Response, parse_cookies
from collector.web.server import Request

COOKIE = "fc_session"
PRE_COOKIE = "fc_login"  # the login form's CSRF token (no session yet)
HTML = "text/html; charset=utf-8"
#: Sent with every answer. Scripts, styles and fetches from this origin
#: only (no inline script: page.js), no framing, no referrer, no sniffing.
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
_PLACEHOLDER = re.compile(r"(\{\{[A-Z]+\}\})")


def package_file(name: str) -> str:
    return resources.files("collector.web").joinpath(name).read_text("utf-8")


class Template:
    """page.html split once at its ``{{NAME}}`` slots; a value put in a slot is
    never read for slots again (``{{CSRF}}`` in a config file stays text)."""

    def __init__(self, text: str) -> None:
        self.parts = _PLACEHOLDER.split(text)

    def render(self, values: dict[str, str]) -> str:
        # Odd indexes are the slots (re.split keeps the captured group).
        return "".join(values[part[2:-2]] if i % 2 else part for i, part in enumerate(self.parts))


def cookie(name: str, value: str, max_age: int | None = None) -> tuple[str, str]:
    age = "" if max_age is None else f"; Max-Age={max_age}"
    return ("Set-Cookie", f"{name}={value}; Path=/; HttpOnly; SameSite=Strict{age}")


def redirect(location: str, *headers: tuple[str, str]) -> Response:
    return Response(302, b"", headers=[("Location", location), *headers])


class Pages:
    """The sessions and the template: whose request it is, and its page."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.template = Template(package_file("static/page.html"))

    def session_of(self, head: RequestHead) -> Session | None:
        return self.sessions.get(parse_cookies(head.headers.get("cookie", "")).get(COOKIE))

    def posted(self, request: Request, form: dict[str, str]) -> Session | Response:
        """The session of a form that changes something, or the answer refusing
        it: no session, the way back to the login; a wrong CSRF token, 403."""
        session = self.session_of(request.head)
        if session is None:
            return redirect("/")
        if not Sessions.csrf_ok(session, form.get("csrf")):
            return Response(403, b"CSRF token missing or wrong\n")
        return session

    def page(
        self,
        view: str,
        body: str,
        session: Session | None,
        *headers: tuple[str, str],
        charts: str = "",
    ) -> Response:
        text = self.template.render(
            {
                "VIEW": view,
                "BODY": body,
                "CSRF": html.escape(session.csrf if session else ""),
                "AUTH": "1" if session else "0",
                "CHARTS": charts,
            }
        )
        return Response(200, text.encode(), HTML, list(headers))
