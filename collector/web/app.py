"""The local web page's routes (issue #9): dashboard, orders, config, log tail.

Served by the collector itself (one process, one loop) with microdot when
``[web] listen`` is set. Everything but ``/`` (login form plus a minimal
status) and ``/api/status`` needs a login (collector/web/auth.py). The live
data are the control socket's own queries (collector/control.py), so the CLI
and the page never disagree. No CDN, no external file: CSS and JS are inline
in collector/web/static/page.html (package data), labels in Chinese and English.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import secrets
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from microdot import Microdot, Request, Response

from collector import control, logs
from collector.config_check import check_config_text
from collector.web.auth import LoginGuard, Session, Sessions, read_hash_file, verify_password
from collector.web.secrets_mask import mask, unmask

if TYPE_CHECKING:
    from collector.daemon import Collector

COOKIE = "fc_session"
PRE_COOKIE = "fc_login"  # the login form's CSRF token (no session yet)
#: The documented example config is ~12 KiB; a bigger POST is refused by
#: microdot (and a body past max_body_length would not be parsed as a form).
MAX_BODY = 64 * 1024
HTML = {"Content-Type": "text/html; charset=utf-8"}


def _template() -> str:
    return resources.files("collector.web").joinpath("static/page.html").read_text("utf-8")


def _cookie(name: str, value: str, max_age: int | None = None) -> str:
    age = "" if max_age is None else f"; Max-Age={max_age}"
    return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict{age}"


def write_config_atomically(path: Path, text: str) -> None:
    """Temp file + fsync + rename + fsync dir; the file it replaces is kept as
    ``<file>.prev`` (the same writer ``config.set`` uses: collector/config_files.py)."""
    from collector.config_files import replace_keeping_prev

    replace_keeping_prev(path, text.encode("utf-8"))


def make_app(collector: Collector, password_file: Path, config_path: Path | None) -> Microdot:
    app = Microdot()
    Request.max_content_length = Request.max_body_length = MAX_BODY
    guard, sessions = LoginGuard(), Sessions()
    template = _template()

    def session_of(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    def page(view: str, body: str, session: Session | None, headers: Any = None) -> Response:
        csrf = session.csrf if session else ""
        text = (
            template.replace("{{VIEW}}", view)
            .replace("{{BODY}}", body)
            .replace("{{CSRF}}", html.escape(csrf))
            .replace("{{AUTH}}", "1" if session else "0")
        )
        return Response(text, headers={**HTML, **(headers or {})})

    def login_page(message: str = "") -> Response:
        pre = secrets.token_urlsafe(32)  # the login form's CSRF token, bound to a cookie
        if read_hash_file(password_file) is None:
            form = (
                '<p class="err">未设置密码 No password is set. On the gateway run: '
                f"<code>forecourt web passwd --file {html.escape(str(password_file))}</code></p>"
            )
        else:
            locked = guard.locked_for()
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
        body = f'<div id="mini"></div>{msg}{form}'
        return page("login", body, None, {"Set-Cookie": [_cookie(PRE_COOKIE, pre)]})

    def need_login(request: Request) -> Response | None:
        return None if session_of(request) else Response.redirect("/")

    @app.get("/")
    async def index(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return login_page()
        return page("dashboard", "", session)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = request.form or {}
        pre = request.cookies.get(PRE_COOKIE)
        if not pre or form.get("csrf") != pre:
            return login_page("表单已过期 The form expired; try again")
        stored = read_hash_file(password_file)
        if stored is None:
            return login_page()
        if guard.locked_for() > 0:
            return login_page("登录已锁定 Login locked")
        # scrypt takes tens of ms (and 16 MiB) on the gateway: off the event
        # loop, so the ports keep polling while a password is checked.
        ok = await asyncio.to_thread(verify_password, str(form.get("password", "")), stored)
        if not guard.attempt(ok):
            return login_page("密码错误 Wrong password")
        token = sessions.create()
        response = Response.redirect("/")
        response.headers["Set-Cookie"] = [_cookie(COOKIE, token)]
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session = session_of(request)
        if Sessions.csrf_ok(session, (request.form or {}).get("csrf")):
            sessions.drop(request.cookies.get(COOKIE))
        response = Response.redirect("/")
        response.headers["Set-Cookie"] = [_cookie(COOKIE, "", 0)]
        return response

    @app.get("/api/status")
    async def minimal_status(request: Request) -> Any:
        status = await control.q_status(collector, {"query": "status"})
        keys = ("running", "ports_online", "ports_total", "uplink_connected", "clock")
        return {k: status[k] for k in keys}

    @app.get("/api/state")
    async def state(request: Request) -> Any:
        if session_of(request) is None:
            return {"error": "login required"}, 401
        state = {}
        # Not "buffer": it counts every stored record; status has the unsent count.
        for name in ("status", "ports", "nozzles", "tanks", "alarms", "uplink"):
            state[name] = await control.QUERIES[name](collector, {"query": name, "limit": 10})
        state["orders"] = await control.q_orders(collector, {"query": "orders", "limit": 10})
        return state

    @app.get("/orders")
    async def orders(request: Request) -> Response:
        if (redirect := need_login(request)) is not None:
            return redirect
        rows = await control.q_orders(collector, {"query": "orders", "limit": 100})
        cols = ("nozzle", "nseq", "order_no", "grade", "volume", "amount", "ended_at", "sent")
        head = "".join(f"<th>{c}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
            for r in rows
        )
        table = f'<table id="orders"><tr>{head}</tr>{body}</table>'
        return page("orders", table, session_of(request))

    @app.get("/config")
    async def config_view(request: Request) -> Response:
        if (redirect := need_login(request)) is not None:
            return redirect
        return config_page(session_of(request), None, [])

    def config_page(
        session: Session | None, text: str | None, errors: list[str], saved: bool = False
    ) -> Response:
        if config_path is None:
            return page("config", "<p>配置文件未知 The config file is not known.</p>", session)
        if text is None:
            text = config_path.read_text("utf-8")
        text = mask(text)  # secrets never reach the page (D9)
        note = (
            '<p class="ok" id="saved">已保存，重启后生效 Saved (previous kept as .prev). '
            "A restart of the collector applies it.</p>"
            if saved
            else ""
        )
        errs = "".join(f"<li>{html.escape(e)}</li>" for e in errors)
        errs = f'<ul class="err" id="errors">{errs}</ul>' if errors else ""
        csrf = html.escape(session.csrf if session else "")
        body = (
            f"{note}{errs}<p>{html.escape(str(config_path))}</p>"
            f'<form method="post" action="/config" id="config-form">'
            f'<input type="hidden" name="csrf" value="{csrf}">'
            '<textarea name="toml" id="toml" rows="30" spellcheck="false">'
            f"{html.escape(text)}</textarea>"
            '<button type="submit" id="save">校验并保存 Check and save</button></form>'
        )
        return page("config", body, session)

    @app.post("/config")
    async def config_save(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return Response.redirect("/")
        form = request.form or {}
        if not Sessions.csrf_ok(session, form.get("csrf")):
            return Response("CSRF token missing or wrong", 403)
        if config_path is None:
            return config_page(session, None, [])
        edited = str(form.get("toml", "")).replace("\r\n", "\n")
        changes = collector.config_changes
        # One writer at a time with config.set / rollback (their file lock).
        async with changes.file_lock if changes is not None else contextlib.nullcontext():
            text, errors = unmask(edited, config_path.read_text("utf-8"))
            errors = errors or await check_config_text(text, config_path.parent)
            from collector.config_files import pending_path

            if pending_path(config_path).exists():
                # Saving now would replace .prev, which a revert puts back.
                errors = ["config: a remote change (config.set) waits for confirmation; try later"]
            if errors:
                return config_page(session, edited, errors)
            write_config_atomically(config_path, text)
        return config_page(session, None, [], saved=True)

    @app.get("/logs")
    async def log_tail(request: Request) -> Response:
        if (redirect := need_login(request)) is not None:
            return redirect
        lines = "\n".join(html.escape(line) for line in logs.RECENT)
        return page("logs", f'<pre id="log">{lines}</pre>', session_of(request))

    return app


async def serve(
    collector: Collector, listen: str, password_file: Path, config_path: Path | None
) -> None:
    """Serve the page on ``host:port`` until cancelled."""
    import structlog

    host, _, port = listen.rpartition(":")
    app = make_app(collector, password_file, config_path)
    server: Any = await app.start_server(  # type: ignore[func-returns-value]
        host=host or "0.0.0.0", port=int(port), start_serving=False
    )
    structlog.get_logger("collector.web").info("web_listening", listen=listen)
    async with server:
        await server.serve_forever()
