"""The bundle download against a real HTTP server on loopback (SPEC D8).

hil/release_server.py runs in a thread of the test; collector/ota/download.py
fetches from it as it does in the collector's worker thread. The end-to-end
resume through the collector is in tests/test_ota_upgrade.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.ota.bundle import BundleError, sm3_file
from collector.ota.download import download
from hil import stack
from hil.release_server import ReleaseServer

SIZE = 1_000_000
DEADLINE_S = 120


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, list[ReleaseServer]]]:
    www = tmp_path / "www"
    www.mkdir()
    (www / "b.bundle").write_bytes(os.urandom(SIZE))
    servers: list[ReleaseServer] = []
    yield www, servers
    for server in servers:
        server.shutdown()
        server.server_close()


def serve(www: Path, servers: list[ReleaseServer], **options: object) -> str:
    server = ReleaseServer(stack.free_port(), www, **options)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
    return f"http://127.0.0.1:{server.server_address[1]}/b.bundle"


def test_a_cut_download_resumes_and_a_killed_one_continues(
    tmp_path: Path, served: tuple[Path, list[ReleaseServer]]
) -> None:
    www, servers = served
    digest = sm3_file(www / "b.bundle")
    url = serve(www, servers, cut_once=300_000)
    done = download(url, SIZE, digest, tmp_path / "staging", DEADLINE_S)
    assert done.read_bytes() == (www / "b.bundle").read_bytes()
    # A collector killed mid-download left a .part: the next attempt continues it.
    part = tmp_path / "staging2" / f"{digest}.part"
    part.parent.mkdir()
    part.write_bytes((www / "b.bundle").read_bytes()[:123_456])
    done = download(serve(www, servers), SIZE, digest, part.parent, DEADLINE_S)
    assert done.read_bytes() == (www / "b.bundle").read_bytes()


def test_a_server_that_ignores_range_is_read_from_the_start(
    tmp_path: Path, served: tuple[Path, list[ReleaseServer]]
) -> None:
    www, servers = served
    digest = sm3_file(www / "b.bundle")
    part = tmp_path / "staging" / f"{digest}.part"
    part.parent.mkdir()
    part.write_bytes((www / "b.bundle").read_bytes()[:500_000])
    done = download(serve(www, servers, ranges=False), SIZE, digest, part.parent, DEADLINE_S)
    assert done.read_bytes() == (www / "b.bundle").read_bytes()


def test_missing_file_and_wrong_bytes_are_refused_without_a_leftover(
    tmp_path: Path, served: tuple[Path, list[ReleaseServer]]
) -> None:
    www, servers = served
    url = serve(www, servers)
    with pytest.raises(BundleError) as refused:
        download(url.replace("b.bundle", "none.bundle"), SIZE, "0" * 64, tmp_path, DEADLINE_S)
    assert refused.value.code == "DOWNLOAD_FAILED"
    with pytest.raises(BundleError) as refused:
        download(url, SIZE, "0" * 64, tmp_path / "staging", DEADLINE_S)
    assert refused.value.code == "DIGEST_MISMATCH"
    assert list((tmp_path / "staging").iterdir()) == []


def test_a_resume_past_the_servers_end_is_refused_and_the_part_kept(
    tmp_path: Path, served: tuple[Path, list[ReleaseServer]]
) -> None:
    # The server now holds a shorter file than the one being resumed (a
    # wrong upload at the same URL): it answers the Range with 416. That
    # will not change by asking again; the .part stays for the right file.
    www, servers = served
    wanted = (www / "b.bundle").read_bytes()
    digest = sm3_file(www / "b.bundle")
    part = tmp_path / "staging" / f"{digest}.part"
    part.parent.mkdir()
    part.write_bytes(wanted[:600_000])
    (www / "b.bundle").write_bytes(wanted[:500_000])
    url = serve(www, servers)
    with pytest.raises(BundleError) as refused:
        download(url, SIZE, digest, part.parent, DEADLINE_S)
    assert refused.value.code == "DOWNLOAD_FAILED"
    assert "HTTP 416" in str(refused.value)
    assert part.read_bytes() == wanted[:600_000]
    (www / "b.bundle").write_bytes(wanted)  # the right file back: the part resumes
    done = download(url, SIZE, digest, part.parent, DEADLINE_S)
    assert done.read_bytes() == wanted
