"""``forecourt verify`` (collector/tools/verify.py): SPEC F2/D19.

A real store written by OrderStore, then edited by hand the way an intruder
would with the sqlite3 shell (an UPDATE of one row's body, a DELETE of a
middle row); the CLI finds the first break per nozzle and exits 1.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from buffer.store import OrderStore
from tests.store_edit import edit_order_text, stored_texts

ROOT = Path(__file__).resolve().parent.parent


def make_store(path: Path) -> None:
    store = OrderStore(path)
    for nozzle in ("p01.a1.n1", "p01.a1.n2"):
        for n in range(1, 6):
            store.append_order(
                nozzle, {"volume": f"{n}.00", "amount": f"{7 * n}.00"}, source_key=f"s{n}"
            )
    store.close()


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", "verify", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_intact_store_is_ok(tmp_path: Path) -> None:
    make_store(tmp_path / "s.sqlite")
    result = verify("--store", str(tmp_path / "s.sqlite"))
    assert result.returncode == 0, result.stderr
    assert "p01.a1.n1: 5 orders: ok" in result.stdout
    assert "10 orders on 2 nozzles, 0 broken" in result.stdout


def test_hand_edited_and_deleted_rows_are_found(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    make_store(path)
    db = sqlite3.connect(path)
    volume = json.loads(stored_texts(db, "order")[2])["volume"]  # p01.a1.n1 nseq 3
    # the fraud: a smaller sale
    edit_order_text(db, "p01.a1.n1", 3, f'"volume":"{volume}"', '"volume":"1.00"')
    db.execute("DELETE FROM records WHERE nozzle='p01.a1.n2' AND nseq=2")
    db.commit()
    db.close()
    result = verify("--store", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "p01.a1.n1: 5 orders: BROKEN at nseq 3 (rid p01.a1.n1:3): hash mismatch" in result.stdout
    assert "p01.a1.n2: 4 orders: BROKEN at nseq 3: nseq gap after 1" in result.stdout


def test_tail_deletion_is_invisible_locally(tmp_path: Path) -> None:
    """The documented limit: deleting the newest orders leaves an intact shorter chain.

    The platform sees it instead (nseq it never received, or h values it holds).
    """
    path = tmp_path / "s.sqlite"
    make_store(path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM records WHERE nozzle='p01.a1.n1' AND nseq=5")
    rows = db.execute("SELECT id, body FROM records WHERE nozzle='p01.a1.n1' AND nseq=4").fetchall()
    db.execute("DELETE FROM records WHERE id=?", (rows[0][0],))
    db.commit()
    db.close()
    result = verify("--store", str(path))
    assert result.returncode == 0
    assert "p01.a1.n1: 3 orders: ok" in result.stdout


def test_usage_errors_and_a_store_it_cannot_read(tmp_path: Path) -> None:
    """2 for usage, 4 for a store it cannot read (docs/cli.md): one line each."""
    assert verify().returncode == 2
    missing = verify("--store", str(tmp_path / "none.sqlite"))
    line = f"{tmp_path / 'none.sqlite'}: no such store\n"
    assert (missing.returncode, missing.stderr) == (4, line)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    junk = verify("--store", str(tmp_path / "junk.sqlite"))
    assert junk.returncode == 4 and junk.stderr.count("\n") == 1


def test_an_order_dropped_on_the_box_is_a_chain_break_at_the_receiver(tmp_path: Path) -> None:
    """F2: delete a stored order before it is published; the platform sees a gap."""
    from hil.platform.receiver import Receiver
    from uplink.envelope import seal

    path = tmp_path / "s.sqlite"
    make_store(path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM records WHERE nozzle='p01.a1.n1' AND nseq=3")
    db.commit()
    bodies = [json.loads(text) for text in stored_texts(db, "order")]
    db.close()
    key = bytes(16)
    receiver = Receiver({"k": key})
    lines = []
    for seq, record in enumerate(bodies, start=1):
        payload = seal(
            {"items": [{**record, "resent": False}]},
            dev="d1", kid="k", key=key, seq=seq, ts_ms=seq, type="order",
        )  # fmt: skip
        out, _ = receiver.handle("forecourt/v1/d1/up/order", payload)
        lines += out
    chain = {(x["record"]["nozzle"], x["record"]["nseq"]): x["chain"] for x in lines}
    assert chain[("p01.a1.n1", 4)] == "gap"
    assert [v for k, v in chain.items() if k != ("p01.a1.n1", 4)] == ["ok"] * 8
    assert verify("--store", str(path)).returncode == 1
