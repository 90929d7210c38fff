"""The page's config editor: ``GET /config`` shows the file, ``POST /config`` saves it.

Secrets never reach the page (D9): the file is shown masked
(collector/web/secrets_mask.py) once the mask is proven, or not at all; a
placeholder sent back keeps the secret it stands for. A save is bounded and
parsed before the secret scan, checked by the loader's own path in a child
(collector/remote/config_check.py), refused while a remote ``config.set``
waits for its confirmation, and written atomically with ``.prev`` kept —
one writer at a time with ``config.set`` and rollback (their file lock). A
restart of the collector applies it.
"""

from __future__ import annotations

import contextlib
import html
from pathlib import Path
from typing import TYPE_CHECKING

from collector.remote.config_check import check_config_text
from collector.web.auth import Session
from collector.web.http import Response
from collector.web.page import Pages, redirect
from collector.web.secrets_mask import MaskError, mask, mask_checked, unmask
from collector.web.server import Request

if TYPE_CHECKING:
    from collector.parts import Station


class ConfigEditor:
    """The config file's view and its save, behind the login and CSRF."""

    def __init__(self, pages: Pages, collector: Station, config_path: Path | None) -> None:
        self.pages = pages
        self.collector = collector
        self.config_path = config_path

    async def view(self, request: Request, form: dict[str, str]) -> Response:
        session = self.pages.session_of(request.head)
        if session is None:
            return redirect("/")
        return self.render(session, None, [])

    def render(
        self, session: Session, edited: str | None, errors: list[str], saved: bool = False
    ) -> Response:
        if self.config_path is None:
            return self.pages.page(
                "config", "<p>配置文件未知 The config file is not known.</p>", session
            )
        if edited is None:
            try:  # secrets never reach the page (D9): proven, or no text at all
                text = mask_checked(self.config_path.read_text("utf-8"))
            except (MaskError, OSError, UnicodeDecodeError) as exc:
                reason = html.escape(str(exc))
                body = f'<p class="err" id="unshown">配置无法显示 Not shown: {reason}</p>'
                return self.pages.page("config", body, session)
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
        return self.pages.page("config", body, session)

    async def save(self, request: Request, form: dict[str, str]) -> Response:
        session = self.pages.posted(request, form)
        if not isinstance(session, Session):
            return session
        if self.config_path is None:
            return self.render(session, None, [])
        edited = form.get("toml", "").replace("\r\n", "\n")
        from config import toml_read

        try:  # before the secret scan, which recurses into the text as the parser does
            toml_read.check_text(edited)
        except toml_read.TomlBoundError as exc:
            return self.render(session, None, [f"config: {exc}"])
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
                return self.render(session, edited, errors)
            write_config_atomically(self.config_path, text)
        return self.render(session, None, [], saved=True)


def write_config_atomically(path: Path, text: str) -> None:
    """Temp file + fsync + rename + fsync dir; the file it replaces is kept as
    ``<file>.prev`` (the same writer ``config.set`` uses: collector/remote/config_files.py)."""
    from collector.remote.config_files import replace_keeping_prev

    replace_keeping_prev(path, text.encode("utf-8"))
