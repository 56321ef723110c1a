"""``skipexp-data isbi2012``: fetching from a local HTTP server, checksums, fallbacks and the failures."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import pytest

from skipexp.config import find_conf_dir
from skipexp.data.download import DownloadError, fetch_files, file_url, isbi2012_defaults, read_urls_file
from skipexp.datacli import main
from tests.data.test_io import one_sentence

ISBI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "isbi2012"
NAMES = ("train-volume.tif", "train-labels.tif", "test-volume.tif")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format, *args):  # the base class's signature
        pass

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "www"``; yields (base URL, served folder, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (QuietHandler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def closed_port() -> int:
    """A local port nobody listens on (bound, then released), so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_files(folder: Path) -> dict[str, str]:
    """Three small files under the ISBI names in ``folder``; returns their sha256 sums."""
    sums = {}
    for i, name in enumerate(NAMES):
        data = bytes([i]) * (1000 + i) + name.encode()
        (folder / name).write_bytes(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    return sums


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def error_for(*args, **kwargs) -> str:
    with pytest.raises(DownloadError) as err:
        fetch_files(*args, progress=False, say=lambda text: None, **kwargs)
    return one_sentence(str(err.value))


def test_config_holds_the_readme_sums():
    sources, sums = isbi2012_defaults(find_conf_dir())
    assert sources == [] and set(sums) == set(NAMES)
    readme = ISBI / "README.md"
    if readme.is_file():
        text = readme.read_text()
        assert all(f"| {name} |" in text and digest in text for name, digest in sums.items())


def test_real_stacks_fetched_verified_and_kept(server, tmp_path, capsys):
    if not all((ISBI / name).is_file() for name in NAMES):
        pytest.skip(f"shared ISBI 2012 data not found at {ISBI}")
    base, root, requests = server
    for name in NAMES:
        shutil.copy(ISBI / name, root / name)
    dest = tmp_path / "dest" / "isbi2012"
    main(["isbi2012", str(dest), "--url-base", base])
    out = capsys.readouterr()
    assert out.out.split() == [str(dest / name) for name in NAMES]
    assert "train-labels.tif: fetched from " in out.err and "sha256 ok" in out.err
    assert leftovers(dest) == sorted(NAMES)  # no temporary files left
    _, sums = isbi2012_defaults(find_conf_dir())
    assert all(hashlib.sha256((dest / n).read_bytes()).hexdigest() == sums[n] for n in NAMES)
    count = len(requests)
    main(["isbi2012", str(dest), "--url-base", base])
    assert len(requests) == count and "already in" in capsys.readouterr().err  # present and intact: not fetched


def test_small_files_fetched_with_progress_messages(server, tmp_path):
    base, root, _ = server
    sums = fake_files(root)
    said: list[str] = []
    paths = fetch_files(tmp_path / "dest", [base], sums, progress=False, say=said.append)
    assert [p.name for p in paths] == list(NAMES) and leftovers(tmp_path / "dest") == sorted(NAMES)
    assert all(f"{base}/{name}" in text for name, text in zip(NAMES, said, strict=True))


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    base, root, _ = server
    sums = fake_files(root)
    good = (root / "train-labels.tif").read_bytes()
    (root / "train-labels.tif").write_bytes(b"X" + good[1:])
    got = hashlib.sha256(b"X" + good[1:]).hexdigest()
    dest = tmp_path / "dest"
    message = error_for(dest, [base], sums)
    assert "could not fetch train-labels.tif" in message and f"{base}/train-labels.tif" in message
    assert "checksum mismatch" in message and sums["train-labels.tif"] in message and got in message
    assert leftovers(dest) == ["train-volume.tif"]  # fetched before the failure, verified; no partial file


def test_refused_connection_then_fallback(server, tmp_path, closed_port):
    base, root, _ = server
    sums = fake_files(root)
    dead = f"http://127.0.0.1:{closed_port}/isbi"
    message = error_for(tmp_path / "dest", [dead], sums)
    assert f"{dead}/train-volume.tif: connection refused" in message and "--url-base" in message
    assert leftovers(tmp_path / "dest") == []
    said: list[str] = []
    paths = fetch_files(tmp_path / "dest", [dead, base], sums, progress=False, say=said.append)
    assert len(paths) == 3 and leftovers(tmp_path / "dest") == sorted(NAMES)
    assert any("connection refused" in text and "trying the next URL base" in text for text in said)


def test_http_404_and_every_url_named(server, tmp_path, closed_port):
    base, root, _ = server
    sums = fake_files(root)
    message = error_for(tmp_path / "dest", [f"{base}/missing", f"http://127.0.0.1:{closed_port}"], sums)
    assert f"{base}/missing/train-volume.tif: HTTP error 404" in message and "connection refused" in message
    assert leftovers(tmp_path / "dest") == []


def test_no_url_base_says_what_to_pass(tmp_path, capsys):
    message = error_for(tmp_path / "dest", [], {"train-volume.tif": "0" * 64})
    assert "no URL base to fetch train-volume.tif" in message and "--url-base URL" in message
    assert not (tmp_path / "dest").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["isbi2012", str(tmp_path / "cli")])
    assert exit_info.value.code == 2 and "--url-base URL" in capsys.readouterr().err


def test_cli_reports_failure_and_exits_non_zero(server, tmp_path, capsys):
    base, _, _ = server
    with pytest.raises(SystemExit) as exit_info:
        main(["isbi2012", str(tmp_path / "dest"), "--url-base", f"{base}/nothing-here"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "skipexp-data: error: could not fetch train-volume.tif" in err
    assert "HTTP error 404" in err and leftovers(tmp_path / "dest") == []


def test_urls_file_and_local_folder_bases(tmp_path):
    listing = tmp_path / "mirrors.txt"
    listing.write_text("# mirrors, tried in order\nhttp://a.example/isbi  # first\n\nhttps://b.example/x/\n")
    assert read_urls_file(listing) == ["http://a.example/isbi", "https://b.example/x/"]
    with pytest.raises(DownloadError) as err:
        read_urls_file(tmp_path / "absent.txt")
    assert str(tmp_path / "absent.txt") in one_sentence(str(err.value))
    assert file_url("https://b.example/x/", "a.tif") == "https://b.example/x/a.tif"
    assert file_url(str(tmp_path), "a.tif") == (tmp_path / "a.tif").as_uri()
    sums = fake_files(tmp_path)
    assert len(fetch_files(tmp_path / "dest", [str(tmp_path)], sums, progress=False, say=lambda text: None)) == 3
