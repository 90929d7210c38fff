"""The web page's guards over HTTP without a browser (issue #9): login, CSRF, cookies.

microdot's own test client against the real app of a real (not started)
Collector built from the demo config; the browser test is tests/test_web_page.py.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from microdot.test_client import TestClient

from collector.daemon import Collector
from collector.web.app import make_app
from collector.web.auth import write_hash_file
from config.loader import load_config

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
FORM_TYPE = "application/x-www-form-urlencoded"


def form() -> dict[str, str]:
    """Fresh headers per request: the test client adds its cookies to the dict it gets."""
    return {"Content-Type": FORM_TYPE}


def csrf_of(text: str) -> str:
    """The page's own form's token (the last one; the header's logout form comes first)."""
    found = re.findall(r'name="csrf" value="([^"]*)"', text)
    assert found and found[-1], text
    return str(found[-1])


def set_cookies(res: Any) -> list[str]:
    value = res.headers.get("Set-Cookie", [])
    return value if isinstance(value, list) else [value]


def test_login_csrf_and_cookies(tmp_path: Path) -> None:
    config_file = tmp_path / "station.toml"
    config_file.write_text(DEMO_CONFIG.read_text())
    password_file = tmp_path / "web-password"
    collector = Collector(load_config(config_file), config_file)
    app = make_app(collector, password_file, config_file)

    async def main() -> None:
        client = TestClient(app)
        res = await client.get("/")
        assert "forecourt web passwd" in res.text, "no password file: says how to set one"
        assert 'id="login"' not in res.text
        write_hash_file(password_file, "pump-island-7")

        assert (await client.get("/api/state")).status_code == 401
        assert (await client.get("/config")).status_code == 302

        res = await client.get("/")
        pre = csrf_of(res.text)
        assert all("HttpOnly" in c and "SameSite=Strict" in c for c in set_cookies(res))
        res = await client.post("/login", body="csrf=forged&password=pump-island-7", headers=form())
        assert "The form expired" in res.text, "the login form's CSRF token is checked"
        pre = csrf_of(res.text)  # each login form comes with a fresh token
        res = await client.post("/login", body=f"csrf={pre}&password=pump-island-7", headers=form())
        assert res.status_code == 302
        [session_cookie] = set_cookies(res)
        assert session_cookie.startswith("fc_session=")
        assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie

        page = await client.get("/config")
        token = csrf_of(page.text)
        edited = config_file.read_text().replace("heartbeat_s = 10", "heartbeat_s = 30")
        body = {"toml": edited}
        for bad in ({}, {"csrf": "forged"}):
            res = await client.post("/config", body=urlencode({**body, **bad}), headers=form())
            assert res.status_code == 403, "a form without its session's CSRF token is refused"
        assert "heartbeat_s = 10" in config_file.read_text()
        res = await client.post("/config", body=urlencode({**body, "csrf": token}), headers=form())
        assert 'id="saved"' in res.text
        assert "heartbeat_s = 30" in config_file.read_text()
        assert "heartbeat_s = 10" in (tmp_path / "station.toml.prev").read_text()
        # While a config.set waits for its confirmation the file is not edited here.
        (tmp_path / "station.toml.pending").write_text("{}")
        again = edited.replace("heartbeat_s = 30", "heartbeat_s = 20")
        res = await client.post(
            "/config", body=urlencode({"toml": again, "csrf": token}), headers=form()
        )
        assert "waits for confirmation" in res.text
        assert "heartbeat_s = 30" in config_file.read_text()

    asyncio.run(main())


def test_a_save_while_config_set_is_planned_waits_and_is_never_lost(tmp_path: Path) -> None:
    """config.set reads the file in a child, then writes its result: a save
    landing in between was written over unseen, the page having said
    "saved". Now the two take turns on the file (ConfigChanges.file_lock):
    the save waits, then finds the change waiting for its confirmation."""
    from collector.config_change import ConfigChanges

    config_file = tmp_path / "station.toml"
    original = DEMO_CONFIG.read_text()
    config_file.write_text(original)
    password_file = tmp_path / "web-password"
    write_hash_file(password_file, "pump-island-7")
    collector = Collector(load_config(config_file), config_file)
    collector.config_changes = ConfigChanges(collector, config_file, [])
    app = make_app(collector, password_file, config_file)

    async def main() -> tuple[dict[str, Any], str]:
        client = TestClient(app)
        pre = csrf_of((await client.get("/")).text)
        await client.post("/login", body=f"csrf={pre}&password=pump-island-7", headers=form())
        token = csrf_of((await client.get("/config")).text)
        edited = original.replace("heartbeat_s = 10", "heartbeat_s = 30")
        assert edited != original
        assert collector.config_changes is not None
        remote = asyncio.create_task(
            collector.config_changes.config_set({"patch": {"uplink": {"heartbeat_s": 20}}})
        )
        await asyncio.sleep(0)  # config.set holds the file and starts its child
        res = await client.post(
            "/config", body=urlencode({"toml": edited, "csrf": token}), headers=form()
        )
        return await remote, res.text

    reply, page = asyncio.run(main())
    assert reply["apply"] == "live" and reply["changed"] == ["uplink.heartbeat_s"], reply
    assert "waits for confirmation" in page, "the save came after, and was refused"
    assert tomllib.loads(config_file.read_text())["uplink"]["heartbeat_s"] == 20
    assert (tmp_path / "station.toml.prev").read_text() == original
