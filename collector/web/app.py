"""The local web page's routes: dashboard, orders, config, log tail, detect.

Served by the collector itself (one process, one loop) on the bounded
server of collector/web/server.py when ``[web] listen`` is set. Everything
but ``/`` (login form plus a minimal status), ``/api/status`` and the two
static files needs a login (collector/web/auth.py). The live data are the
control socket's own queries (collector/tools/control.py), so the CLI and the page
never disagree; the anonymous status reads only what the daemon holds in
memory (no store query for a stranger). No CDN, no external file, no inline
script or style: page.js and page.css are package data served from memory,
so the Content-Security-Policy allows nothing but this origin. Labels in
Chinese and English.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from collector import logs
from collector.remote.config_check import check_config_text
from collector.tools import control, storeview
from collector.tools.history import SAMPLE_EVERY_S, History, history_path, sample
from collector.web.auth import (
    ChecksBusy,
    LoginGuard,
    PasswordChecks,
    Session,
    Sessions,
    hash_is_usable,
    read_hash_file,
)
from collector.web.chart_views import ChartsView
from collector.web.detect_view import DetectView
from collector.web.http import (
    FORM_TYPE,
    HttpError,
    RequestHead,
    Response,
    decode_form,
    host_allowed,
    media_type,
    parse_cookies,
)
from collector.web.secrets_mask import MaskError, mask, mask_checked, unmask
from collector.web.server import Request, WebServer

if TYPE_CHECKING:
    from collector.parts import Station

log = structlog.get_logger("collector.web")

COOKIE = "fc_session"
PRE_COOKIE = "fc_login"  # the login form's CSRF token (no session yet)
#: A body from a logged-in session: the documented example config is ~12 KiB.
MAX_BODY = 64 * 1024
#: A body without a session: the login form (a token and a password).
MAX_ANONYMOUS_BODY = 1024
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
#: What a store query may raise (a missing or damaged store): answered, not a 500.
STORE_ERRORS = (storeview.StoreUnavailable, sqlite3.Error)
STATIC = {"/static/page.js": "text/javascript; charset=utf-8", "/static/page.css": "text/css"}
_PLACEHOLDER = re.compile(r"(\{\{[A-Z]+\}\})")


def _package_file(name: str) -> str:
    return resources.files("collector.web").joinpath(name).read_text("utf-8")


class Template:
    """page.html split once at its ``{{NAME}}`` slots; a value put in a slot is
    never read for slots again (``{{CSRF}}`` in a config file stays text)."""

    def __init__(self, text: str) -> None:
        self.parts = _PLACEHOLDER.split(text)

    def render(self, values: dict[str, str]) -> str:
        # Odd indexes are the slots (re.split keeps the captured group).
        return "".join(values[part[2:-2]] if i % 2 else part for i, part in enumerate(self.parts))


def _cookie(name: str, value: str, max_age: int | None = None) -> tuple[str, str]:
    age = "" if max_age is None else f"; Max-Age={max_age}"
    return ("Set-Cookie", f"{name}={value}; Path=/; HttpOnly; SameSite=Strict{age}")


def redirect(location: str, *headers: tuple[str, str]) -> Response:
    return Response(302, b"", headers=[("Location", location), *headers])


Route = Callable[[Request, dict[str, str]], Awaitable[Response]]


class WebApp:
    """The page: routes, the login and what every answer carries."""

    def __init__(
        self,
        collector: Station,
        password_file: Path,
        config_path: Path | None,
        hosts: Sequence[str] = (),
    ) -> None:
        self.collector = collector
        self.password_file = password_file
        self.config_path = config_path
        self.hosts = tuple(hosts)
        self.guard, self.sessions, self.checks = LoginGuard(), Sessions(), PasswordChecks()
        self.template = Template(_package_file("static/page.html"))
        self.static = {path: _package_file(path[1:]).encode() for path in STATIC}
        self.server: WebServer | None = None  # set by serve(): its counters on the dashboard
        self.routes: dict[tuple[str, str], Route] = {
            ("GET", "/"): self.index,
            ("POST", "/login"): self.login,
            ("POST", "/logout"): self.logout,
            ("GET", "/api/status"): self.minimal_status,
            ("GET", "/api/state"): self.state,
            ("GET", "/orders"): self.orders,
            ("GET", "/config"): self.config_view,
            ("POST", "/config"): self.config_save,
            ("GET", "/logs"): self.log_tail,
            ("GET", "/charts"): self.charts_fragment,
            ("GET", "/detect"): self.detect_view,
            ("POST", "/detect"): self.detect_start,
            ("POST", "/detect/apply"): self.detect_apply,
        }
        #: The dashboard's charts (collector/web/chart_views.py); serve() gives
        #: it the backlog samples file.
        self.charts = ChartsView(collector.config.device.tzinfo, None)
        #: The per-port detect action (collector/web/detect_view.py).
        self.detect = DetectView(collector)

    # -- what every request goes through -------------------------------

    def session_of(self, head: RequestHead) -> Session | None:
        return self.sessions.get(parse_cookies(head.headers.get("cookie", "")).get(COOKIE))

    def body_limit(self, head: RequestHead) -> int:
        """A body the server reads: a logged-in session's, or the login form."""
        return MAX_BODY if self.session_of(head) is not None else MAX_ANONYMOUS_BODY

    async def handle(self, request: Request) -> Response:
        head = request.head
        if not host_allowed(head.host, request.local, self.hosts):
            raise HttpError(421, f"Host {head.host[:64]!r} is not this page's")
        method = "GET" if head.method == "HEAD" else head.method
        if method == "GET" and head.path in self.static:
            response = Response(200, self.static[head.path], STATIC[head.path])
        else:
            route = self.routes.get((method, head.path))
            if route is None:
                known = any(path == head.path for _, path in self.routes)
                raise HttpError(405 if known else 404, f"{head.method} {head.path[:64]}")
            form: dict[str, str] = {}
            if method == "POST":
                if media_type(head.headers.get("content-type", "")) != FORM_TYPE:
                    raise HttpError(415, "a form is application/x-www-form-urlencoded")
                form = decode_form(request.body)
            response = await route(request, form)
        response.headers.extend(SECURITY_HEADERS)
        return response

    def count(self, kind: str, peer: str, detail: str = "") -> None:
        """A refused login, counted and logged like the server's refusals."""
        if self.server is not None:
            self.server.refusals.add(kind, peer=peer, detail=detail)

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

    # -- login -----------------------------------------------------------

    def login_page(self, peer: str, message: str = "", status: int = 200) -> Response:
        pre = secrets.token_urlsafe(32)  # the login form's CSRF token, bound to a cookie
        stored = read_hash_file(self.password_file)
        set_it = (
            "On the gateway run: "
            f"<code>forecourt web passwd --file {html.escape(str(self.password_file))}</code>"
        )
        if stored is None:
            form = f'<p class="err">未设置密码 No password is set. {set_it}</p>'
        elif not hash_is_usable(stored):
            form = f'<p class="err">密码文件需要更新 The password file needs renewing. {set_it}</p>'
        else:
            locked = self.guard.locked_for(peer)
            lock = (
                f'<p class="err" id="locked">登录已锁定 Login locked for {locked:.0f} s</p>'
                if locked
                else ""
            )
            form = (
                f'{lock}<form method="post" action="/login" id="login">'
                f'<input type="hidden" name="csrf" value="{pre}">'
                '<label>密码 Password <input type="password" name="password" id="password" '
                'autocomplete="current-password"></label>'
                '<button type="submit" id="login-button">登录 Log in</button></form>'
            )
        msg = f'<p class="err" id="message">{html.escape(message)}</p>' if message else ""
        response = self.page("login", f'<div id="mini"></div>{msg}{form}', None)
        response.status = status
        response.headers.append(_cookie(PRE_COOKIE, pre))
        return response

    async def index(self, request: Request, form: dict[str, str]) -> Response:
        session = self.session_of(request.head)
        if session is None:
            return self.login_page(request.peer)
        return self.page("dashboard", "", session, charts=self.charts_html())

    def charts_html(self) -> str:
        """The charts from the store, drawn now (an unreadable store: its reason)."""
        try:
            with control.store_reader(self.collector) as db:
                return self.charts.render(db, time.time_ns() // 1_000_000)
        except STORE_ERRORS as exc:
            return f'<section id="charts"><p class="err">{html.escape(str(exc))}</p></section>'

    async def charts_fragment(self, request: Request, form: dict[str, str]) -> Response:
        """``/charts``: the section alone, for page.js to swap in once a minute."""
        if self.session_of(request.head) is None:
            return Response(401, b"login required\n")
        return Response(200, self.charts_html().encode(), HTML)

    async def login(self, request: Request, form: dict[str, str]) -> Response:
        peer = request.peer
        pre = parse_cookies(request.head.headers.get("cookie", "")).get(PRE_COOKIE)
        if not pre or not secrets.compare_digest(form.get("csrf", ""), pre):
            return self.login_page(peer, "表单已过期 The form expired; try again")
        stored = read_hash_file(self.password_file)
        if stored is None or not hash_is_usable(stored):
            return self.login_page(peer)
        if (wait := self.guard.locked_for(peer)) > 0:
            self.count("login_locked", peer, f"{wait:.0f} s to wait")
            return self.login_page(peer, f"登录已锁定 Login locked for {wait:.0f} s", 429)
        try:
            ok = await self.checks.verify(peer, form.get("password", ""), stored)
        except ChecksBusy:
            self.count("login_busy", peer, f"{self.checks.pending} checks pending")
            return self.login_page(peer, "稍后再试 Busy checking passwords; try again", 429)
        if not self.guard.attempt(peer, ok):
            self.count("wrong_password", peer)
            return self.login_page(peer, "密码错误 Wrong password")
        log.info("web_login", peer=peer)
        return redirect("/", _cookie(COOKIE, self.sessions.create()))

    async def logout(self, request: Request, form: dict[str, str]) -> Response:
        # Always ends the session, token or not: ending one is never harmful.
        token = parse_cookies(request.head.headers.get("cookie", "")).get(COOKIE)
        self.sessions.drop(token)
        return redirect("/", _cookie(COOKIE, "", 0))

    # -- data --------------------------------------------------------------

    async def minimal_status(self, request: Request, form: dict[str, str]) -> Response:
        """For anyone: what the daemon holds in memory, never a store query."""
        c = self.collector
        status = {
            "running": True,
            "ports_online": sum(1 for p in c.ports if p.stats.online),
            "ports_total": len(c.config.ports),
            "uplink_connected": bool(c.uplink and c.uplink.stats.connected),
            "clock": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return Response(200, json.dumps(status).encode(), "application/json")

    async def state(self, request: Request, form: dict[str, str]) -> Response:
        if self.session_of(request.head) is None:
            return Response(401, b'{"error": "login required"}', "application/json")
        c, state = self.collector, {}
        try:
            # Not "buffer": it counts every stored record; status has the unsent count.
            for name in ("status", "ports", "nozzles", "tanks", "alarms", "uplink"):
                state[name] = await control.QUERIES[name](c, {"query": name, "limit": 10})
            state["orders"] = await control.q_orders(c, {"query": "orders", "limit": 10})
        except STORE_ERRORS as exc:
            error = json.dumps({"error": f"store: {exc}"}).encode()
            return Response(503, error, "application/json")
        state["web"] = self.server.stats() if self.server is not None else {}
        return Response(200, json.dumps(state, default=str).encode(), "application/json")

    async def orders(self, request: Request, form: dict[str, str]) -> Response:
        session = self.session_of(request.head)
        if session is None:
            return redirect("/")
        try:
            rows = await control.q_orders(self.collector, {"query": "orders", "limit": 100})
        except STORE_ERRORS as exc:
            return self.page("orders", f'<p class="err">{html.escape(str(exc))}</p>', session)
        cols = ("nozzle", "nseq", "order_no", "grade", "volume", "amount", "ended_at", "sent")
        head = "".join(f"<th>{c}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
            for r in rows
        )
        return self.page("orders", f'<table id="orders"><tr>{head}</tr>{body}</table>', session)

    async def log_tail(self, request: Request, form: dict[str, str]) -> Response:
        session = self.session_of(request.head)
        if session is None:
            return redirect("/")
        lines = "\n".join(html.escape(line) for line in logs.RECENT)
        return self.page("logs", f'<pre id="log">{lines}</pre>', session)

    # -- detect ------------------------------------------------------------

    async def detect_view(self, request: Request, form: dict[str, str]) -> Response:
        session = self.session_of(request.head)
        if session is None:
            return redirect("/")
        return self.page("detect", self.detect.render(session.csrf), session)

    def _detect_form(self, request: Request, form: dict[str, str]) -> Response | int:
        """The session and port number of a detect form, or the answer refusing it."""
        session = self.session_of(request.head)
        if session is None:
            return redirect("/")
        if not Sessions.csrf_ok(session, form.get("csrf")):
            return Response(403, b"CSRF token missing or wrong\n")
        try:
            return int(form.get("port", ""))
        except ValueError:
            return self.page("detect", self.detect.render(session.csrf, "no port"), session)

    async def detect_start(self, request: Request, form: dict[str, str]) -> Response:
        number = self._detect_form(request, form)
        if not isinstance(number, int):
            return number
        why = self.detect.start(number)
        if why:
            session = self.session_of(request.head)
            assert session is not None
            return self.page("detect", self.detect.render(session.csrf, why), session)
        return redirect("/detect")

    async def detect_apply(self, request: Request, form: dict[str, str]) -> Response:
        number = self._detect_form(request, form)
        if not isinstance(number, int):
            return number
        why = await self.detect.apply(number)
        session = self.session_of(request.head)
        assert session is not None
        return self.page("detect", self.detect.render(session.csrf, why), session)

    # -- config editor -------------------------------------------------

    async def config_view(self, request: Request, form: dict[str, str]) -> Response:
        session = self.session_of(request.head)
        if session is None:
            return redirect("/")
        return self.config_page(session, None, [])

    def config_page(
        self, session: Session, edited: str | None, errors: list[str], saved: bool = False
    ) -> Response:
        if self.config_path is None:
            return self.page("config", "<p>配置文件未知 The config file is not known.</p>", session)
        if edited is None:
            try:  # secrets never reach the page (D9): proven, or no text at all
                text = mask_checked(self.config_path.read_text("utf-8"))
            except (MaskError, OSError, UnicodeDecodeError) as exc:
                reason = html.escape(str(exc))
                body = f'<p class="err" id="unshown">配置无法显示 Not shown: {reason}</p>'
                return self.page("config", body, session)
        else:
            text = mask(edited)  # what this session sent, placeholders kept
        note = (
            '<p class="ok" id="saved">已保存，重启后生效 Saved (previous kept as .prev). '
            "A restart of the collector applies it.</p>"
            if saved
            else ""
        )
        errs = "".join(f"<li>{html.escape(e)}</li>" for e in errors)
        errs = f'<ul class="err" id="errors">{errs}</ul>' if errors else ""
        body = (
            f"{note}{errs}<p>{html.escape(str(self.config_path))}</p>"
            f'<form method="post" action="/config" id="config-form">'
            f'<input type="hidden" name="csrf" value="{html.escape(session.csrf)}">'
            '<textarea name="toml" id="toml" rows="30" spellcheck="false">'
            f"{html.escape(text)}</textarea>"
            '<button type="submit" id="save">校验并保存 Check and save</button></form>'
        )
        return self.page("config", body, session)

    async def config_save(self, request: Request, form: dict[str, str]) -> Response:
        session = self.session_of(request.head)
        if session is None:
            return redirect("/")
        if not Sessions.csrf_ok(session, form.get("csrf")):
            return Response(403, b"CSRF token missing or wrong\n")
        if self.config_path is None:
            return self.config_page(session, None, [])
        edited = form.get("toml", "").replace("\r\n", "\n")
        from config import toml_read

        try:  # before the secret scan, which recurses into the text as the parser does
            toml_read.check_text(edited)
        except toml_read.TomlBoundError as exc:
            return self.config_page(session, None, [f"config: {exc}"])
        changes = self.collector.config_changes
        # One writer at a time with config.set / rollback (their file lock).
        async with changes.file_lock if changes is not None else contextlib.nullcontext():
            text, errors = unmask(edited, self.config_path.read_text("utf-8"))
            errors = errors or await check_config_text(text, self.config_path.parent)
            from collector.remote.config_files import pending_path

            if pending_path(self.config_path).exists():
                # Saving now would replace .prev, which a revert puts back.
                errors = ["config: a remote change (config.set) waits for confirmation; try later"]
            if errors:
                return self.config_page(session, edited, errors)
            write_config_atomically(self.config_path, text)
        return self.config_page(session, None, [], saved=True)


def write_config_atomically(path: Path, text: str) -> None:
    """Temp file + fsync + rename + fsync dir; the file it replaces is kept as
    ``<file>.prev`` (the same writer ``config.set`` uses: collector/remote/config_files.py)."""
    from collector.remote.config_files import replace_keeping_prev

    replace_keeping_prev(path, text.encode("utf-8"))


async def serve(
    collector: Station,
    bind: tuple[str, int],
    password_file: Path,
    config_path: Path | None,
    hosts: Sequence[str] = (),
) -> None:
    """Serve the page on ``bind`` (config/derived.py ``WebDerived.bind``) until cancelled."""
    app = WebApp(collector, password_file, config_path, hosts)
    server = app.server = WebServer(app, log)
    listener = await server.start(*bind)
    host, port = bind
    log.info("web_listening", listen=f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    samples = app.charts.history = History(history_path(Path(collector.config.store.path)))

    def unsent() -> int:
        with control.store_reader(collector) as db:
            return storeview.unsent_total(db)

    try:
        async with listener, asyncio.TaskGroup() as tg:
            tg.create_task(sample(samples, unsent, SAMPLE_EVERY_S))
            await listener.serve_forever()
    finally:
        server.refusals.close()
        samples.close()
