"""The web page's guards over HTTP without a browser: login, CSRF, cookies, headers.

The real app of a real (not started) Collector built from the demo config,
on its own server on a loopback port, asked over real sockets
(tests/web_client.py); the browser test is tests/test_web_page.py.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path

from collector.daemon import Collector
from collector.web.app import WebApp
from collector.web.auth import FREE_FAILURES, write_hash_file
from config.loader import load_config
from tests.waits import WatchedLock
from tests.web_client import Client, csrf_of, serving

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.toml"


def test_login_csrf_and_cookies(tmp_path: Path) -> None:
    config_file = tmp_path / "station.toml"
    # A store that is not there (the demo's own, .demo/store.sqlite, may be).
    absent = tmp_path / "absent.sqlite"
    config_file.write_text(
        DEMO_CONFIG.read_text().replace('path = ".demo/store.sqlite"', f'path = "{absent}"')
    )
    password_file = tmp_path / "web-password"
    collector = Collector(load_config(config_file), config_file)
    app = WebApp(collector, password_file, config_file)

    async def main() -> None:
        async with serving(app) as port:
            await steps(Client(port))

    async def steps(client: Client) -> None:
        res = await client.get("/")
        assert "forecourt web passwd" in res.text, "no password file: says how to set one"
        assert 'id="login"' not in res.text
        write_hash_file(password_file, "pump-island-7")

        assert (await client.get("/api/state")).status == 401
        assert (await client.get("/charts")).status == 401
        assert (await client.get("/config")).status == 302

        res = await client.get("/")
        pre = csrf_of(res.text)
        assert all("HttpOnly" in c and "SameSite=Strict" in c for c in res.set_cookies())
        res = await client.post("/login", {"csrf": "forged", "password": "pump-island-7"})
        assert "The form expired" in res.text, "the login form's CSRF token is checked"
        pre = csrf_of(res.text)  # each login form comes with a fresh token
        res = await client.post("/login", {"csrf": pre, "password": "pump-island-7"})
        assert res.status == 302
        [session_cookie] = res.set_cookies()
        assert session_cookie.startswith("fc_session=")
        assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie

        # page.js's once-a-minute refresh; no store here: the section says why.
        charts = await client.get("/charts")
        assert charts.status == 200 and charts.text.startswith('<section id="charts">')
        assert 'class="err"' in charts.text
        page = await client.get("/config")
        token = csrf_of(page.text)
        edited = config_file.read_text().replace("heartbeat_s = 10", "heartbeat_s = 30")
        body = {"toml": edited}
        for bad in ({}, {"csrf": "forged"}):
            res = await client.post("/config", {**body, **bad})
            assert res.status == 403, "a form without its session's CSRF token is refused"
        assert "heartbeat_s = 10" in config_file.read_text()
        res = await client.post("/config", {**body, "csrf": token})
        assert 'id="saved"' in res.text
        assert "heartbeat_s = 30" in config_file.read_text()
        assert "heartbeat_s = 10" in (tmp_path / "station.toml.prev").read_text()
        # While a config.set waits for its confirmation the file is not edited here.
        (tmp_path / "station.toml.pending").write_text("{}")
        again = edited.replace("heartbeat_s = 30", "heartbeat_s = 20")
        res = await client.post("/config", {"toml": again, "csrf": token})
        assert "waits for confirmation" in res.text
        assert "heartbeat_s = 30" in config_file.read_text()

    asyncio.run(main())


def test_a_save_while_config_set_is_planned_waits_and_is_never_lost(tmp_path: Path) -> None:
    """config.set reads the file in a child, then writes its result: a save
    landing in between was written over unseen, the page having said
    "saved". Now the two take turns on the file (ConfigChanges.file_lock):
    the save waits, then finds the change waiting for its confirmation."""
    from collector.remote.config_change import ConfigChanges

    config_file = tmp_path / "station.toml"
    original = DEMO_CONFIG.read_text()
    config_file.write_text(original)
    password_file = tmp_path / "web-password"
    write_hash_file(password_file, "pump-island-7")
    collector = Collector(load_config(config_file), config_file)
    collector.config_changes = ConfigChanges(collector, config_file, [])
    collector.config_changes.file_lock = lock = WatchedLock()
    app = WebApp(collector, password_file, config_file)

    async def main() -> tuple[dict[str, object], str]:
        async with serving(app) as port:
            client = Client(port)
            await client.login("pump-island-7")
            token = csrf_of((await client.get("/config")).text)
            edited = original.replace("heartbeat_s = 10", "heartbeat_s = 30")
            assert edited != original
            assert collector.config_changes is not None
            remote = asyncio.create_task(
                collector.config_changes.config_set({"patch": {"uplink": {"heartbeat_s": 20}}})
            )
            await asyncio.wait_for(lock.held.wait(), 5)  # config.set holds the file
            res = await client.post("/config", {"toml": edited, "csrf": token})
            return await remote, res.text

    reply, page = asyncio.run(main())
    assert reply["apply"] == "live" and reply["changed"] == ["uplink.heartbeat_s"], reply
    assert "waits for confirmation" in page, "the save came after, and was refused"
    assert tomllib.loads(config_file.read_text())["uplink"]["heartbeat_s"] == 20
    assert (tmp_path / "station.toml.prev").read_text() == original


def started_app(tmp_path: Path, config_text: str | None = None) -> tuple[WebApp, Path]:
    config_file = tmp_path / "station.toml"
    text = config_text or DEMO_CONFIG.read_text()
    store = tmp_path / "store.sqlite"
    config_file.write_text(text.replace('path = ".demo/store.sqlite"', f'path = "{store}"'))
    password_file = tmp_path / "web-password"
    write_hash_file(password_file, "pump-island-7")
    collector = Collector(load_config(config_file), config_file)
    return WebApp(
        collector, password_file, config_file, hosts=["collector.station.lan"]
    ), config_file


def test_every_answer_carries_the_security_headers_and_the_page_no_inline_code(
    tmp_path: Path,
) -> None:
    app, _ = started_app(tmp_path)

    async def main() -> None:
        async with serving(app) as port:
            client = Client(port)
            login = await client.get("/")
            await client.login("pump-island-7")
            state = await client.get("/api/state")
            assert state.status == 503 and "no such store file" in state.text, "answered, no 500"
            for reply in (login, await client.get("/config"), state):
                csp = reply.header("Content-Security-Policy") or ""
                assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
                assert "unsafe-inline" not in csp
                assert reply.header("X-Content-Type-Options") == "nosniff"
                assert reply.header("Referrer-Policy") == "no-referrer"
            for page in (login, await client.get("/config"), await client.get("/orders")):
                assert "<script>" not in page.text and "style=" not in page.text
            js = await client.get("/static/page.js")
            assert "javascript" in (js.header("Content-Type") or "")

    asyncio.run(main())


def test_a_host_the_page_does_not_serve_is_refused(tmp_path: Path) -> None:
    app, _ = started_app(tmp_path)

    async def main() -> None:
        async with serving(app) as port:
            for host, status in (
                (f"127.0.0.1:{port}", 200),
                (f"localhost:{port}", 200),
                ("collector.station.lan", 200),  # [web] hosts: a TLS proxy's name
                (f"evil.example:{port}", 421),  # DNS rebinding
                (f"127.0.0.1:{port + 1}", 421),
                ("127.0.0.1", 421),
                (f"127.0.0.1:{port}0", 421),
            ):
                reply = await Client(port, host=host).get("/api/status")
                assert reply.status == status, (host, reply.status)

    asyncio.run(main())


def test_logout_without_its_token_still_ends_the_session(tmp_path: Path) -> None:
    app, _ = started_app(tmp_path)

    async def main() -> None:
        async with serving(app) as port:
            client = Client(port)
            await client.login("pump-island-7")
            token = client.cookies["fc_session"]
            assert (await client.get("/config")).status == 200
            await client.post("/logout", {})
            client.cookies["fc_session"] = token  # a copy of the cookie kept
            assert (await client.get("/config")).status == 302, "back to the login"
            assert len(app.sessions) == 0

    asyncio.run(main())


def test_slots_in_page_content_are_never_filled(tmp_path: Path) -> None:
    text = DEMO_CONFIG.read_text() + "\n# {{CSRF}} {{AUTH}} {{VIEW}} {{BODY}}\n"
    app, _ = started_app(tmp_path, text)

    async def main() -> None:
        async with serving(app) as port:
            client = Client(port)
            await client.login("pump-island-7")
            page = (await client.get("/config")).text
            assert "# {{CSRF}} {{AUTH}} {{VIEW}} {{BODY}}" in page
            csrf = csrf_of(page)
            assert page.count(csrf) == 2, "the logout form's and the editor's, nowhere else"

    asyncio.run(main())


def test_malformed_forms_are_400_never_a_traceback(tmp_path: Path) -> None:
    app, _ = started_app(tmp_path)

    async def main() -> None:
        async with serving(app) as port:
            assert app.server is not None
            client = Client(port)
            await client.get("/")
            for body, ctype, status in (
                (b"csrf=%zz&password=x", "application/x-www-form-urlencoded", 400),
                (b"csrf=\xff", "application/x-www-form-urlencoded", 400),
                (b"csrf=a&csrf=b", "application/x-www-form-urlencoded", 400),
                (b'{"password": "x"}', "application/json", 415),
                (b"x" * 2000, "application/x-www-form-urlencoded", 413),  # no session: 1 KiB
            ):
                reply = await client.request("POST", "/login", body, {"Content-Type": ctype})
                assert reply.status == status, (body[:20], reply.status, reply.text)
            refused = app.server.refusals.by_kind()
            assert "handler_error" not in refused and refused["bad_request"] == 4

    asyncio.run(main())


def test_the_anonymous_status_never_reads_the_store(tmp_path: Path) -> None:
    app, _ = started_app(tmp_path)
    store = Path(app.collector.config.store.path)
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_bytes(b"not a database")  # any store query would fail

    async def main() -> None:
        async with serving(app) as port:
            reply = await Client(port).get("/api/status")
            assert reply.status == 200
            status = json.loads(reply.body)
            assert set(status) == {
                "running", "ports_online", "ports_total", "uplink_connected", "clock"
            }  # fmt: skip

    asyncio.run(main())


def test_one_address_locked_while_another_logs_in(tmp_path: Path) -> None:
    app, _ = started_app(tmp_path)

    async def main() -> None:
        async with serving(app) as port:
            stranger, technician = Client(port, "127.0.0.66"), Client(port, "127.0.0.1")
            for _ in range(FREE_FAILURES):
                assert "Wrong password" in (await stranger.login("guess-guess")).text
            locked = await stranger.login("pump-island-7")
            assert locked.status == 429 and 'id="locked"' in locked.text
            assert (await technician.login("pump-island-7")).status == 302

    asyncio.run(main())
