"""saltbench fetch against a loopback HTTP server the test starts and stops: a good file, a wrong
digest, a connection dropped mid-file, a 404, an archive; and what the paper's grid would fetch."""
from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmark import fetch
from benchmark.cli import main
from benchmark.config import load_config
from benchmark.errors import FetchError
from benchmark.models import sam
from tests.conftest import tiny_grid, write_grid

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def _archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        handle.writestr("arcade/syntax/train/images/1.png", b"png")
        handle.writestr("arcade/stenosis/readme.txt", b"other task")
        handle.writestr("LICENSE", b"CC BY 4.0")
    return buffer.getvalue()


ARCHIVE = _archive()


class Server(ThreadingHTTPServer):
    drops_left: int = 0  # how many more requests of /flaky are cut off half way


class Handler(BaseHTTPRequestHandler):
    def _send(self, body: bytes | None) -> None:
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            if self.path == "/flaky" and self.server.drops_left > 0:
                self.server.drops_left -= 1
                self.wfile.write(body[: len(body) // 2])  # announced in full, cut off half way
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    def _body(self) -> bytes | None:
        return {"/good": PAYLOAD, "/flaky": PAYLOAD, "/arcade.zip": ARCHIVE}.get(self.path)

    def do_GET(self) -> None:
        self._send(self._body())

    def do_HEAD(self) -> None:
        self._send(self._body())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _remote(url: str, digest: str | None = DIGEST) -> fetch.Remote:
    return fetch.Remote("test file", url, digest, "recorded by the test")


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_a_good_file_lands_verified_and_a_second_fetch_keeps_it(server, tmp_path):
    _, base = server
    target = tmp_path / "checkpoints" / "model.pth"
    line = fetch.fetch(target, _remote(f"{base}/good"), progress=False)
    assert target.read_bytes() == PAYLOAD and f"sha256 {DIGEST} verified" in line
    stamp = target.stat().st_mtime_ns
    fetch.fetch(target, _remote(f"{base}/good"), progress=False)
    assert target.stat().st_mtime_ns == stamp  # digest matched: not downloaded again
    assert _leftovers(target.parent) == ["model.pth"]


def test_a_wrong_digest_removes_the_file_and_names_both_digests(server, tmp_path):
    _, base = server
    wrong = "0" * 64
    target = tmp_path / "model.pth"
    with pytest.raises(FetchError) as error:
        fetch.fetch(target, _remote(f"{base}/good", wrong), progress=False)
    assert wrong in str(error.value) and DIGEST in str(error.value) and "removed" in str(error.value)
    assert _leftovers(tmp_path) == []


def test_a_dropped_connection_leaves_nothing_and_a_rerun_succeeds(server, tmp_path):
    httpd, base = server
    httpd.drops_left = 1
    target = tmp_path / "model.pth"
    for digest in (DIGEST, None):  # without a recorded digest too: the announced length catches the cut
        httpd.drops_left = 1
        with pytest.raises(FetchError, match="download failed, nothing kept"):
            fetch.fetch(target, _remote(f"{base}/flaky", digest), progress=False)
        assert _leftovers(tmp_path) == []
    line = fetch.fetch(target, _remote(f"{base}/flaky"), progress=False)
    assert target.read_bytes() == PAYLOAD and "verified" in line


def test_a_missing_file_is_a_clear_error(server, tmp_path):
    _, base = server
    with pytest.raises(FetchError, match="404"):
        fetch.fetch(tmp_path / "model.pth", _remote(f"{base}/nothing"), progress=False)
    assert _leftovers(tmp_path) == []
    with pytest.raises(FetchError, match="404"):
        fetch.remote_size(f"{base}/nothing")


def test_a_file_without_a_recorded_digest_says_so_with_the_digest_it_got(server, tmp_path):
    _, base = server
    line = fetch.fetch(tmp_path / "model.pth", _remote(f"{base}/good", None), progress=False)
    assert f"sha256 {DIGEST} NOT verified: recorded by the test" in line


def test_an_archive_unpacks_its_folder_as_the_dataset_root(server, tmp_path):
    _, base = server
    remote = replace(fetch.ARCADE, url=f"{base}/arcade.zip", sha256=hashlib.sha256(ARCHIVE).hexdigest())
    root = tmp_path / "data" / "ARCADE"
    fetch.fetch(root, remote, progress=False)
    assert (root / "syntax" / "train" / "images" / "1.png").read_bytes() == b"png"
    assert _leftovers(root.parent) == ["ARCADE"]  # the archive and the scratch folder are gone
    with pytest.raises(FetchError, match=r"has no folder 'syntax' \(it holds LICENSE, arcade\)"):
        fetch.fetch(tmp_path / "other", replace(remote, unpack="syntax"), progress=False)


def test_the_paper_grid_fetches_checkpoints_and_arcade_and_lists_the_rest():
    items = {str(item.target): item for item in fetch.plan(load_config(ROOT / "config" / "paper.yaml", check_paths=False))}
    remote = {target for target, item in items.items() if isinstance(item.source, fetch.Remote)}
    assert remote == {"checkpoints/sam_vit_b_01ec64.pth", "checkpoints/ViT-B-32.pt", "data/ARCADE"}
    assert items["checkpoints/ViT-B-32.pt"].source.sha256 in items["checkpoints/ViT-B-32.pt"].source.url
    manual = {target: item.source.steps for target, item in items.items() if isinstance(item.source, fetch.Manual)}
    assert set(manual) == {"checkpoints/medsam_vit_b.pth", "data/XRay-Angio", "data/DIAS", "data/ROSE", "data/DRIVE"}
    assert "drive.grand-challenge.org" in manual["data/DRIVE"] and "data/DRIVE/training" in manual["data/DRIVE"]
    sam2_items = fetch.plan(load_config(ROOT / "config" / "sam2.yaml", check_paths=False))
    hiera = next(item for item in sam2_items if item.target.name == "sam2.1_hiera_base_plus.pt")
    assert hiera.source.sha256 is None and "no SHA-256" in hiera.source.digest_source


def test_dry_run_lists_sizes_and_downloads_nothing(server, tmp_path):
    _, base = server
    items = [fetch.Item(tmp_path / "a.pth", _remote(f"{base}/good"), "backbone x"),
             fetch.Item(tmp_path / "b", fetch.Manual("DRIVE", "register somewhere"), "dataset drive"),
             fetch.Item(tmp_path / "c.pth", _remote(f"{base}/nothing"), "backbone y")]
    lines: list[str] = []
    failures = fetch.fetch_all(items, dry_run=True, say=lines.append)
    assert f"[would fetch, {len(PAYLOAD):,} bytes]" in lines[0]
    assert "[MISSING; needs registration or a manual download]" in lines[1] and "register somewhere" in lines[1]
    assert len(failures) == 1 and "404" in failures[0] and "FAILED" in lines[2]
    assert _leftovers(tmp_path) == []


def test_the_command_fetches_a_grids_checkpoint_to_its_configured_path(server, tmp_path, monkeypatch, capsys):
    _, base = server
    monkeypatch.chdir(tmp_path)  # relative config paths are taken from where saltbench runs
    monkeypatch.setitem(sam.ARCHS, "sam_vit_b", replace(sam.ARCHS["sam_vit_b"], url=f"{base}/good"))
    grid = tiny_grid(tmp_path, baselines=[], methods=[{"name": "frozen"}], backbones={"sam": {
        "name": "sam_vit_b", "weights": "pretrained", "checkpoint": "checkpoints/sam.pth", "input_size": 64}})
    path = str(write_grid(tmp_path, grid))
    monkeypatch.setitem(fetch.SAM_DIGESTS, "sam_vit_b", ("0" * 64, "recorded by the test"))
    with pytest.raises(SystemExit, match="1 download\\(s\\) failed; nothing of them was kept"):
        main(["fetch", "--config", path])
    assert f"expected sha256:{'0' * 64}" in capsys.readouterr().out and not (tmp_path / "checkpoints" / "sam.pth").exists()
    monkeypatch.setitem(fetch.SAM_DIGESTS, "sam_vit_b", (DIGEST, "recorded by the test"))
    main(["fetch", "--config", path])
    assert (tmp_path / "checkpoints" / "sam.pth").read_bytes() == PAYLOAD
    assert f"checkpoints/sam.pth: SAM ViT-B, sha256 {DIGEST} verified" in capsys.readouterr().out
