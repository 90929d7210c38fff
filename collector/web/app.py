"""The local web page's assembly: its routes, what every request goes through, serve().

Served by the collector itself (one process, one loop) on the bounded
server of collector/web/server.py when ``[web] listen`` is set. Everything
but ``/`` (login form plus a minimal status), ``/api/status`` and the two
static files needs a login (collector/web/auth.py). The route groups: the
login form, login and logout in collector/web/login.py, the config editor
in collector/web/config_editor.py; here the views that read (dashboard,
state, orders, log tail, charts) and the detect actions (drawn and run by
collector/web/detect_view.py). What every page is made of (the template,
the headers, the cookies, the session of a request) is collector/web/page.py.

The live data are the control socket's own queries
(collector/tools/control.py), so the CLI and the page never disagree; the
anonymous status reads only what the daemon holds in memory (no store
query for a stranger). No CDN, no external file, no inline script or
style: page.js and page.css are package data served from memory, so the
Content-Security-Policy allows nothing but this origin. Labels in Chinese
and English.
"""

from __future__ import annotations

import asyncio
import html
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from collector import logs
from collector.tools import control, storeview
from collector.tools.history import SAMPLE_EVERY_S, History, history_path, sample
from collector.web.auth import Session, Sessions
from collector.web.chart_views import ChartsView
from collector.web.config_editor import ConfigEditor
from collector.web.detect_view import DetectView
from collector.web.http import (
    FORM_TYPE,
    HttpError,
    RequestHead,
    Response,
    decode_form,
    host_allowed,
    media_type,
)
from collector.web.login import Login
from collector.web.page import HTML, SECURITY_HEADERS, Pages, package_file, redirect
from collector.web.server import Request, WebServer

if TYPE_CHECKING:
    from collector.parts import Station

log = structlog.get_logger("collector.web")

#: A body from a logged-in session: the documented example config is ~12 KiB.
MAX_BODY = 64 * 1024
#: A body without a session: the login form (a token and a password).
MAX_ANONYMOUS_BODY = 1024
#: What a store query may raise (a missing or damaged store): answered, not a 500.
STORE_ERRORS = (storeview.StoreUnavailable, sqlite3.Error)
STATIC = {"/static/page.js": "text/javascript; charset=utf-8", "/static/page.css": "text/css"}

Route = Callable[[Request, dict[str, str]], Awaitable[Response]]


class WebApp:
    """The page: its routes, the body limits and what every answer carries."""

    def __init__(
        self,
        collector: Station,
        password_file: Path,
        config_path: Path | None,
        hosts: Sequence[str] = (),
    ) -> None:
        self.collector = collector
        self.hosts = tuple(hosts)
        self.sessions = Sessions()
        self.pages = Pages(self.sessions)
        self.login = Login(self.pages, password_file, self.count)
        self.editor = ConfigEditor(self.pages, collector, config_path)
        self.static = {path: package_file(path[1:]).encode() for path in STATIC}
        self.server: WebServer | None = None  # set by serve(): its counters on the dashboard
        self.routes: dict[tuple[str, str], Route] = {
            ("GET", "/"): self.index,
            ("POST", "/login"): self.login.login,
            ("POST", "/logout"): self.login.logout,
            ("GET", "/api/status"): self.minimal_status,
            ("GET", "/api/state"): self.state,
            ("GET", "/orders"): self.orders,
            ("GET", "/config"): self.editor.view,
            ("POST", "/config"): self.editor.save,
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
        return self.pages.session_of(head)

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

    # -- the pages that read -------------------------------------------------

    async def index(self, request: Request, form: dict[str, str]) -> Response:
        session = self.session_of(request.head)
        if session is None:
            return self.login.form_page(request.peer)
        return self.pages.page("dashboard", "", session, charts=self.charts_html())

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
            return self.pages.page("orders", f'<p class="err">{html.escape(str(exc))}</p>', session)
        cols = ("nozzle", "nseq", "order_no", "grade", "volume", "amount", "ended_at", "sent")
        head = "".join(f"<th>{c}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
            for r in rows
        )
        return self.pages.page(
            "orders", f'<table id="orders"><tr>{head}</tr>{body}</table>', session
        )

    async def log_tail(self, request: Request, form: dict[str, str]) -> Response:
        session = self.session_of(request.head)
        if session is None:
            return redirect("/")
        lines = "\n".join(html.escape(line) for line in logs.RECENT)
        return self.pages.page("logs", f'<pre id="log">{lines}</pre>', session)

    # -- detect ------------------------------------------------------------

    async def detect_view(self, request: Request, form: dict[str, str]) -> Response:
        session = self.session_of(request.head)
        if session is None:
            return redirect("/")
        return self.pages.page("detect", self.detect.render(session.csrf), session)

    def _detect_form(
        self, request: Request, form: dict[str, str]
    ) -> tuple[Session, int] | Response:
        """The session and port number of a detect form, or the answer refusing it."""
        session = self.pages.posted(request, form)
        if not isinstance(session, Session):
            return session
        try:
            return session, int(form.get("port", ""))
        except ValueError:
            return self.pages.page("detect", self.detect.render(session.csrf, "no port"), session)

    async def detect_start(self, request: Request, form: dict[str, str]) -> Response:
        posted = self._detect_form(request, form)
        if isinstance(posted, Response):
            return posted
        session, number = posted
        if why := self.detect.start(number):
            return self.pages.page("detect", self.detect.render(session.csrf, why), session)
        return redirect("/detect")

    async def detect_apply(self, request: Request, form: dict[str, str]) -> Response:
        posted = self._detect_form(request, form)
        if isinstance(posted, Response):
            return posted
        session, number = posted
        why = await self.detect.apply(number)
        return self.pages.page("detect", self.detect.render(session.csrf, why), session)


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
