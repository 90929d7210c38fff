"""Times a technician reads are the station's wall clock with its offset.

The store's own alarms are stamped in UTC (buffer/store.py); an alarm raised
at 12:47 in a +08:00 station is stored as ``04:47:00.000+00:00``. The web
page's data (``/api/state``, what page.html renders verbatim) and the CLI,
with the collector up or down, show it as ``12:47:00.000+08:00``, whatever
the TZ of the process. Real store file, real app, the real ``forecourt`` CLI.
The browser shows the same (tests/test_web_page.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

from buffer.store import OrderStore
from collector.daemon import Collector
from collector.tools.localtime import local_iso, local_times, station_tz
from collector.web.app import WebApp
from collector.web.auth import write_hash_file
from config.loader import load_config
from tests.web_client import Client, csrf_of, serving

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "config" / "demo.toml"
CST = timezone(timedelta(hours=8))
#: 12:47 at the station, as the store stamps its own alarms (UTC).
RAISED_UTC = "2026-03-01T04:47:00.000+00:00"
RAISED_LOCAL = "2026-03-01T12:47:00.000+08:00"


def test_instants_move_to_the_station_offset_and_keep_their_precision() -> None:
    assert local_iso(RAISED_UTC, CST) == RAISED_LOCAL
    assert local_iso("2026-03-01T04:47:00+00:00", CST) == "2026-03-01T12:47:00+08:00"
    assert local_iso(RAISED_LOCAL, CST) == RAISED_LOCAL, "already local: unchanged"
    assert local_iso("2026-03-01T12:47:00", CST) == "2026-03-01T12:47:00", "naive: as said"
    assert local_iso("not a time", CST) == "not a time"
    nested = {"active": [{"at": RAISED_UTC, "code": "X"}], "ended_at": None, "nseq": 3}
    assert local_times(nested, CST) == {
        "active": [{"at": RAISED_LOCAL, "code": "X"}], "ended_at": None, "nseq": 3,
    }  # fmt: skip
    assert station_tz({"device": {"timezone": "-03:30"}}).utcoffset(None) == timedelta(
        hours=-3, minutes=-30
    )
    assert station_tz({}) == CST, "the config's default"


def station(tmp_path: Path) -> Path:
    text = DEMO_CONFIG.read_text()
    text = text.replace('path = ".demo/store.sqlite"', f'path = "{tmp_path / "store.sqlite"}"')
    text += f'\n[control]\nsocket = "{tmp_path / "ctl.sock"}"\n'
    config = tmp_path / "station.toml"
    config.write_text(text)
    store = OrderStore(tmp_path / "store.sqlite")
    body = {"code": "STORE_FAULT", "state": "raised", "source": "store", "at": RAISED_UTC}
    store.append_record("alarm", "store:STORE_FAULT:raised:1", {**body, "detail": {}})
    store.close()
    return config


def test_the_page_data_and_the_cli_show_the_station_time(tmp_path: Path) -> None:
    config = station(tmp_path)
    password = tmp_path / "web-password"
    write_hash_file(password, "pump-island-7")
    collector = Collector(load_config(config), config)
    app = WebApp(collector, password, config)

    async def page_state() -> dict[str, Any]:
        async with serving(app) as port:
            client = Client(port)
            csrf = csrf_of((await client.get("/")).text)
            await client.post("/login", {"csrf": csrf, "password": "pump-island-7"})
            res = await client.get("/api/state")
            assert res.status == 200
            return dict(json.loads(res.text))

    state = asyncio.run(page_state())
    [alarm] = state["alarms"]["active"]
    assert alarm["at"] == RAISED_LOCAL
    assert state["status"]["clock"].endswith("+08:00"), "the status clock too"

    # The CLI with the collector down reads the store itself; the box's own
    # TZ (here New York) does not matter, the station's offset does.
    env = {**os.environ, "TZ": "America/New_York"}
    argv = [sys.executable, "-m", "collector", "alarms", "--config", str(config)]
    done = subprocess.run([*argv, "--json"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 3, done.stderr  # EXIT_DOWN: answered from the store
    assert [a["at"] for a in json.loads(done.stdout)["active"]] == [RAISED_LOCAL]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env)
    assert RAISED_LOCAL in done.stdout and "04:47" not in done.stdout
