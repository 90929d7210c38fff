"""The page's login form and its two actions, ``POST /login`` and ``POST /logout``.

The form carries its own CSRF token, bound to a cookie (there is no session
yet). A login is refused, counted (the server's refusals: ``login_locked``,
``login_busy``, ``wrong_password``) and answered with the form again: while
the address waits (collector/web/auth.py ``LoginGuard``), while the password
checks are busy (``PasswordChecks``), or for a wrong password. Without a
usable password file the form says how to set one and takes nothing.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Callable
from pathlib import Path

import structlog

from collector.web.auth import (
    ChecksBusy,
    LoginGuard,
    PasswordChecks,
    hash_is_usable,
    read_hash_file,
)
from collector.web.http import Response, parse_cookies
from collector.web.page import COOKIE, PRE_COOKIE, Pages, cookie, redirect
from collector.web.server import Request

log = structlog.get_logger("collector.web")

#: Counts a refused login: kind, peer, detail (collector/web/app.py ``WebApp.count``).
Count = Callable[[str, str, str], None]


class Login:
    """The login form, the login and the logout."""

    def __init__(self, pages: Pages, password_file: Path, count: Count) -> None:
        self.pages = pages
        self.password_file = password_file
        self.count = count
        self.guard, self.checks = LoginGuard(), PasswordChecks()

    def form_page(self, peer: str, message: str = "", status: int = 200) -> Response:
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
        response = self.pages.page("login", f'<div id="mini"></div>{msg}{form}', None)
        response.status = status
        response.headers.append(cookie(PRE_COOKIE, pre))
        return response

    async def login(self, request: Request, form: dict[str, str]) -> Response:
        peer = request.peer
        pre = parse_cookies(request.head.headers.get("cookie", "")).get(PRE_COOKIE)
        if not pre or not secrets.compare_digest(form.get("csrf", ""), pre):
            return self.form_page(peer, "表单已过期 The form expired; try again")
        stored = read_hash_file(self.password_file)
        if stored is None or not hash_is_usable(stored):
            return self.form_page(peer)
        if (wait := self.guard.locked_for(peer)) > 0:
            self.count("login_locked", peer, f"{wait:.0f} s to wait")
            return self.form_page(peer, f"登录已锁定 Login locked for {wait:.0f} s", 429)
        try:
            ok = await self.checks.verify(peer, form.get("password", ""), stored)
        except ChecksBusy:
            self.count("login_busy", peer, f"{self.checks.pending} checks pending")
            return self.form_page(peer, "稍后再试 Busy checking passwords; try again", 429)
        if not self.guard.attempt(peer, ok):
            self.count("wrong_password", peer, "")
            return self.form_page(peer, "密码错误 Wrong password")
        log.info("web_login", peer=peer)
        return redirect("/", cookie(COOKIE, self.pages.sessions.create()))

    async def logout(self, request: Request, form: dict[str, str]) -> Response:
        # Always ends the session, token or not: ending one is never harmful.
        token = parse_cookies(request.head.headers.get("cookie", "")).get(COOKIE)
        self.pages.sessions.drop(token)
        return redirect("/", cookie(COOKIE, "", 0))
