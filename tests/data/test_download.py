"""``skipexp-data isbi2012``: the public sources tried in order against a 127.0.0.1 server, each check, the failures,
``--from`` imports, and the shipped checksums against the project's stacks."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from skipexp.config import compose_config
from skipexp.data import data_spec
from skipexp.data.download import DownloadError, Failed, fetch, file_url, mirrored, read_urls_file
from skipexp.data.isbi2012_fetch import get_isbi2012, import_isbi2012
from skipexp.data.isbi2012_sources import (
    SHIPPED,
    STACKS,
    Sources,
    SourcesError,
    Stack,
    git_blob_sha1,
    mismatch,
    pixels_sha256,
)
from skipexp.datacli import main
from tests.conftest import SHARED_DATA, run_cli
from tests.data.test_io import one_sentence

ISBI = SHARED_DATA / "isbi2012"
FILES = [f"{name}.tif" for name in STACKS]
needs_shared = pytest.mark.skipif(not all((ISBI / f).is_file() for f in FILES),
                                  reason=f"the project's ISBI 2012 stacks are not at {ISBI}")


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``/truncated/...`` promises more bytes than it sends, ``/hang/...`` never answers in time."""

    requests: list[str]

    def log_message(self, format, *args):  # the base class's signature
        pass

    def do_GET(self):
        self.requests.append(self.path)
        if self.path.startswith("/truncated/"):
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"x" * 100)
            self.close_connection = True
            return
        if self.path.startswith("/hang/"):
            time.sleep(1.5)
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "www"``; yields (base URL, served folder, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []
    handler = type("LoggedHandler", (Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    httpd.daemon_threads = True
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


def tiff_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, photometric="minisblack")
    return buffer.getvalue()


def png_bytes(section: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(section).save(buffer, format="PNG")
    return buffer.getvalue()


def small_stacks(seed: int = 0) -> dict[str, np.ndarray]:
    """Three little stacks (3 sections of 8 x 8) in the challenge's conventions: images, 0/255 labels, images."""
    rng = np.random.default_rng(seed)
    return {"train-volume": rng.integers(0, 256, (3, 8, 8), dtype=np.uint8),
            "train-labels": np.where(rng.random((3, 8, 8)) < 0.3, 0, 255).astype(np.uint8),
            "test-volume": rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)}


def table_for(stacks: dict[str, np.ndarray], base: str) -> Sources:
    """A sources table like the shipped one for ``stacks``: TIFF mirrors at BASE/m1 and BASE/m2, PNG slices under
    BASE/png/data/NAME/ (what ``serve`` writes)."""
    made = []
    for name, array in stacks.items():
        made.append(Stack(name=name, pixels_sha256=pixels_sha256(array),
                          sections_sha256=tuple(pixels_sha256(s) for s in array),
                          tiff_git_blob_sha1=git_blob_sha1(tiff_bytes(array)),
                          png_slices=tuple((f"data/{name}/{i}.png", hashlib.sha256(png_bytes(s)).hexdigest())
                                           for i, s in enumerate(array))))
    return Sources(shape=next(iter(stacks.values())).shape, tiff_mirrors=(f"{base}/m1/{{name}}.tif",
                   f"{base}/m2/{{name}}.tif"), png_url=f"{base}/png/{{path}}", stacks=tuple(made))


def serve(www: Path, stacks: dict[str, np.ndarray], mirrors=("m1", "m2"), pngs: bool = True) -> None:
    """Put the stacks where ``table_for`` says: both TIFF mirrors and the PNG slices."""
    for name, array in stacks.items():
        for mirror in mirrors:
            (www / mirror).mkdir(exist_ok=True)
            (www / mirror / f"{name}.tif").write_bytes(tiff_bytes(array))
        if pngs:
            folder = www / "png" / "data" / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, section in enumerate(array):
                (folder / f"{i}.png").write_bytes(png_bytes(section))


def leftovers(dest: Path) -> list[str]:
    """Every name in ``dest``, hidden temporary files included."""
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def quiet(**kwargs):
    said: list[str] = []
    return said, {"progress": False, "say": said.append, **kwargs}


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(DownloadError) as err:
        call(*args, **kwargs)
    return one_sentence(str(err.value))


def assert_stacks(dest: Path, stacks: dict[str, np.ndarray]) -> None:
    assert leftovers(dest) == sorted(FILES)
    for name, array in stacks.items():
        np.testing.assert_array_equal(tifffile.imread(dest / f"{name}.tif"), array)


# --- the shipped table -------------------------------------------------------------------------------------------

@needs_shared
def test_shipped_checksums_equal_the_project_stacks_and_the_shared_sources():
    sources = Sources.shipped()
    for stack in sources.stacks:
        array = tifffile.imread(ISBI / stack.file)
        assert array.shape == sources.shape == (30, 512, 512) and array.dtype == np.uint8
        assert pixels_sha256(array) == stack.pixels_sha256
        assert [pixels_sha256(section) for section in array] == list(stack.sections_sha256)
        assert mismatch(stack, array, sources) is None
    listed = ISBI / "sources.json"
    if listed.is_file():  # the shipped copy of the public sources is faithful to the one the data came with
        shared = json.loads(listed.read_text())
        assert sources.tiff_mirrors == tuple(m["url"] for m in shared["tiff_mirrors"])
        assert sources.png_url == shared["png_slices"]["url"]
        for stack in sources.stacks:
            assert stack.pixels_sha256 == shared["pixels_sha256"][stack.name]
            assert stack.tiff_git_blob_sha1 == shared["tiff_git_blob_sha1"][stack.name]
            listed_pngs = shared["png_slices"]["stacks"][stack.name]
            assert stack.png_slices == tuple((p["path"], p["sha256"]) for p in listed_pngs)


def test_shipped_table_names_the_public_copies():
    sources = Sources.shipped()
    assert [s.name for s in sources.stacks] == list(STACKS) and sources.shape == (30, 512, 512)
    volume, test = sources.stack("train-volume"), sources.stack("test-volume")
    assert [url.format(name="train-volume") for url in sources.tiff_mirrors] == [
        "https://raw.githubusercontent.com/zhixuhao/unet/b45af4d458437d8281cc218a07fd4380818ece4a/data/membrane/"
        "train-volume.tif",
        "https://raw.githubusercontent.com/alexklibisz/isbi-2012/238a567ae843f7c03e5cc5d3f233cd3f93f0da17/data/"
        "train-volume.tif"]
    assert sources.png_url.format(path=test.png_slices[29][0]) == (
        "https://raw.githubusercontent.com/zhixuhao/unet/b45af4d458437d8281cc218a07fd4380818ece4a/data/membrane/test/"
        "29.png")
    assert [Path(p).name for p, _ in volume.png_slices] == [f"{i}.png" for i in range(30)]  # exact names, in order
    assert len({s for stack in sources.stacks for s in stack.sections_sha256}) == 90  # every section is distinct


def test_a_malformed_table_is_refused():
    data = json.loads(SHIPPED.read_text())
    data["stacks"]["train-labels"]["pixels_sha256"] = "XYZ"
    with pytest.raises(SourcesError, match="malformed"):
        Sources.from_json(data)
    data = json.loads(SHIPPED.read_text())
    data["stacks"]["test-volume"]["png_slices"].pop()
    with pytest.raises(SourcesError, match="29 PNG slices for 30 sections"):
        Sources.from_json(data)


def test_git_blob_id_is_gits():
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # `git hash-object /dev/null`
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


# --- downloading ------------------------------------------------------------------------------------------------

def test_tiff_mirror_gives_every_stack(server, tmp_path):
    base, www, requests = server
    stacks = small_stacks()
    serve(www, stacks)
    said, options = quiet()
    paths = get_isbi2012(tmp_path / "dest", table_for(stacks, base), **options)
    assert paths == [tmp_path / "dest" / f for f in FILES]
    assert_stacks(tmp_path / "dest", stacks)
    assert requests == [f"/m1/{f}" for f in FILES]  # the first mirror answered: nothing else asked
    assert all("decoded pixels match" in text for text in said)


def test_corrupted_mirror_then_png_fallback(server, tmp_path):
    base, www, requests = server
    stacks = small_stacks()
    serve(www, stacks)
    for f in FILES:
        (www / "m1" / f).unlink()  # 404
        data = bytearray((www / "m2" / f).read_bytes())
        data[-1] ^= 0xFF  # one flipped pixel: the git blob id no longer matches
        (www / "m2" / f).write_bytes(bytes(data))
    said, options = quiet()
    get_isbi2012(tmp_path / "dest", table_for(stacks, base), **options)
    assert_stacks(tmp_path / "dest", stacks)
    first = [text for text in said if text.startswith("train-volume.tif")]
    assert "HTTP error 404" in first[0] and "checksum mismatch (expected git blob" in first[1]
    assert "from the PNG slices at " in first[2] and len([r for r in requests if r.endswith(".png")]) == 9


def test_every_source_failing_names_each_and_leaves_nothing(server, tmp_path, closed_port):
    base, www, _ = server
    stacks = small_stacks()
    sources = table_for(stacks, base)
    dead = f"http://127.0.0.1:{closed_port}/{{name}}.tif"
    sources = Sources(sources.shape, (dead, f"{base}/m2/{{name}}.tif"), sources.png_url, sources.stacks)
    serve(www, stacks, mirrors=("m2",), pngs=False)
    (www / "m2" / "train-volume.tif").write_bytes(b"not a tiff at all")
    message = refusal(get_isbi2012, tmp_path / "dest", sources, **quiet()[1])
    assert message.startswith("could not get train-volume.tif intact from any source (")
    assert f"http://127.0.0.1:{closed_port}/train-volume.tif: connection refused" in message
    got = git_blob_sha1(b"not a tiff at all")
    blob = sources.stacks[0].tiff_git_blob_sha1
    assert f"{base}/m2/train-volume.tif: checksum mismatch (expected git blob {blob}, got {got})" in message
    assert f"the PNG slices at {base}/png/data/train-volume/: 0.png: HTTP error 404 File not found" in message
    assert "--from PATH" in message
    assert not (tmp_path / "dest").exists()  # nothing written, not even the folder


def test_a_wrong_png_slice_is_named(server, tmp_path):
    base, www, _ = server
    stacks = small_stacks()
    sources = table_for(stacks, base)
    serve(www, stacks, mirrors=())
    bad = stacks["train-labels"][1].copy()
    bad[0, 0] = 255 - bad[0, 0]
    (www / "png" / "data" / "train-labels" / "1.png").write_bytes(png_bytes(bad))
    message = refusal(get_isbi2012, tmp_path / "dest", sources, **quiet()[1])
    expected = sources.stack("train-labels").png_slices[1][1]
    got = hashlib.sha256(png_bytes(bad)).hexdigest()
    assert "could not get train-labels.tif" in message
    assert f"1.png: checksum mismatch (expected sha256 {expected}, got {got})" in message
    assert leftovers(tmp_path / "dest") == ["train-volume.tif"]  # verified before the failure; no partial file


def test_user_url_base_is_checked_by_pixels_and_tried_first(server, tmp_path):
    base, www, requests = server
    stacks = small_stacks()
    serve(www, stacks)
    (www / "mine").mkdir()
    other = stacks["train-labels"].copy()
    other[2] = 255 - other[2]  # section 2 differs
    (www / "mine" / "train-labels.tif").write_bytes(tiff_bytes(other))
    (www / "mine" / "train-volume.tif").write_bytes(tiff_bytes(stacks["train-volume"]))
    said, options = quiet(url_bases=[f"{base}/mine"])
    get_isbi2012(tmp_path / "dest", table_for(stacks, base), **options)
    assert_stacks(tmp_path / "dest", stacks)
    assert requests[:3] == ["/mine/train-volume.tif", "/mine/train-labels.tif", "/m1/train-labels.tif"]
    labels = next(text for text in said if text.startswith("train-labels.tif"))
    assert "1 of its 3 sections differ from the challenge's (section 2)" in labels


def test_truncated_and_silent_servers(server, tmp_path):
    base, _, _ = server
    with pytest.raises(Failed, match="connection closed after 100 of 5000 bytes"):
        fetch(f"{base}/truncated/train-volume.tif", timeout=5)
    with pytest.raises(Failed, match=r"no answer within 0.3 s"):
        fetch(f"{base}/hang/train-volume.tif", timeout=0.3)
    stacks = small_stacks()
    sources = table_for(stacks, base)
    sources = Sources(sources.shape, (f"{base}/truncated/{{name}}.tif",), f"{base}/hang/{{path}}", sources.stacks)
    message = refusal(get_isbi2012, tmp_path / "dest", sources, **quiet(timeout=0.3)[1])
    assert "connection closed after 100 of 5000 bytes" in message and "0.png: no answer within 0.3 s" in message
    assert not (tmp_path / "dest").exists()


def test_a_correct_stack_is_kept_and_a_wrong_one_replaced(server, tmp_path):
    base, www, requests = server
    stacks = small_stacks()
    serve(www, stacks)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "train-volume.tif").write_bytes(tiff_bytes(stacks["train-volume"]))
    (dest / "train-labels.tif").write_bytes(tiff_bytes(255 - stacks["train-labels"]))
    said, options = quiet()
    get_isbi2012(dest, table_for(stacks, base), **options)
    assert_stacks(dest, stacks)
    assert requests == ["/m1/train-labels.tif", "/m1/test-volume.tif"]
    assert "train-volume.tif: already in" in said[0]
    assert "differs (its values are inverted (0 and 255 swapped)); getting it again" in said[1]


def test_mirror_option_reads_the_shipped_urls_from_a_local_server(server, tmp_path, capsys, monkeypatch):
    base, www, requests = server
    first = Sources.shipped().tiff_mirrors[0].format(name="train-volume").split("://", 1)[1]
    (www / first).parent.mkdir(parents=True)
    (www / first).write_bytes(b"garbage")
    dest = tmp_path / "dest"
    monkeypatch.setenv("SKIPEXP_DATA_MIRROR", base)  # the environment variable and --mirror do the same
    for argv in (["isbi2012", str(dest)], ["isbi2012", str(dest), "--mirror", base]):
        requests.clear()
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit_info.value.code == 2 and err.startswith("skipexp-data: error: could not get train-volume.tif")
        one_sentence(err)
        blob = Sources.shipped().stack("train-volume").tiff_git_blob_sha1
        assert f"{base}/{first}: checksum mismatch (expected git blob {blob}, got {git_blob_sha1(b'garbage')})" in err
        assert requests == [
            f"/{first}",
            "/raw.githubusercontent.com/alexklibisz/isbi-2012/238a567ae843f7c03e5cc5d3f233cd3f93f0da17/data/"
            "train-volume.tif",
            "/raw.githubusercontent.com/zhixuhao/unet/b45af4d458437d8281cc218a07fd4380818ece4a/data/membrane/train/"
            "image/0.png"]
        assert not dest.exists()


def test_url_helpers(tmp_path):
    assert mirrored("https://raw.githubusercontent.com/a/b.tif", "http://127.0.0.1:8000/") == \
        "http://127.0.0.1:8000/raw.githubusercontent.com/a/b.tif"
    assert mirrored("https://h/a.tif", None) == "https://h/a.tif"
    assert mirrored("https://h/a.tif", str(tmp_path)) == (tmp_path / "h" / "a.tif").as_uri()
    assert file_url("https://b.example/x/", "a.tif") == "https://b.example/x/a.tif"
    assert file_url(str(tmp_path), "a.tif") == (tmp_path / "a.tif").as_uri()
    listing = tmp_path / "mirrors.txt"
    listing.write_text("# mirrors, tried in order\nhttp://a.example/isbi  # first\n\nhttps://b.example/x/\n")
    assert read_urls_file(listing) == ["http://a.example/isbi", "https://b.example/x/"]
    assert str(tmp_path / "absent.txt") in refusal(read_urls_file, tmp_path / "absent.txt")


# --- importing a copy ---------------------------------------------------------------------------------------------

def write_png_folder(folder: Path, array: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, section in enumerate(array):
        (folder / f"{i}.png").write_bytes(png_bytes(section))
    (folder / "0_predict.png").write_bytes(png_bytes(array[0] // 2))  # as the mirror's test folder has: not read


def test_import_from_tiffs_and_from_png_folders(tmp_path):
    stacks = small_stacks()
    sources = table_for(stacks, "http://unused")
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, array in stacks.items():
        (mine / f"{name}.tif").write_bytes(tiff_bytes(array))
    said: list[str] = []
    import_isbi2012(tmp_path / "a", mine, sources, say=said.append)
    assert_stacks(tmp_path / "a", stacks)
    for name, array in stacks.items():
        write_png_folder(tmp_path / "pngs" / name, array)
    import_isbi2012(tmp_path / "b", tmp_path / "pngs", sources, say=said.append)
    assert_stacks(tmp_path / "b", stacks)
    assert any(f"from the PNG slices in {tmp_path / 'pngs' / 'test-volume'}" in text for text in said)


@pytest.mark.parametrize("change, words", [
    (lambda s: s[[1, 0, 2]], "the same sections in another order (position 0 holds section 1, position 1 holds "
                             "section 0); stack them in section order 0 to 2"),
    (lambda s: s[::-1], "the same sections in reverse order"),
    (lambda s: 255 - s, "its values are inverted (0 and 255 swapped)"),
    (lambda s: (s // 255).astype(np.uint8), "it stores 0/1 where the challenge stores 0/255"),
    (lambda s: (1 - s // 255).astype(np.uint8), "it stores 0/1 with 1 = membrane"),
    (lambda s: s.astype(np.uint16), "it holds a uint16 stack of 3 x 8 x 8, where the challenge's train-labels is "
                                    "uint8 3 x 8 x 8"),
    (lambda s: s[:2], "it holds a uint8 stack of 2 x 8 x 8"),
    (lambda s: np.where(np.arange(3)[:, None, None] == 1, 0, s).astype(np.uint8),
     "1 of its 3 sections differ from the challenge's (section 1): decoded-pixel sha256 expected"),
    (lambda s: np.where(np.arange(3)[:, None, None] == 2, 7, s).astype(np.uint8),
     "(section 2) (it holds the values 0, 7, 255; the challenge's labels are 0 and 255)"),
])
def test_import_says_what_differs(tmp_path, change, words):
    stacks = small_stacks()
    sources = table_for(stacks, "http://unused")
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, array in stacks.items():
        (mine / f"{name}.tif").write_bytes(tiff_bytes(change(array) if name == "train-labels" else array))
    message = refusal(import_isbi2012, tmp_path / "dest", mine, sources, say=lambda text: None)
    assert message.startswith(f"could not get train-labels.tif intact from any source ({mine / 'train-labels.tif'}: ")
    assert words in message and "give the challenge's train-labels" in message
    assert leftovers(tmp_path / "dest") == ["train-volume.tif"]


def test_import_names_another_stack_missing_slices_and_nothing_found(tmp_path):
    stacks = small_stacks()
    sources = table_for(stacks, "http://unused")
    mine = tmp_path / "mine"
    write_png_folder(mine / "train-volume", stacks["test-volume"])
    message = refusal(import_isbi2012, tmp_path / "dest", mine, sources, say=lambda text: None)
    assert "it holds the test-volume stack, not train-volume" in message
    write_png_folder(mine / "train-volume", stacks["train-volume"])
    (mine / "train-volume" / "2.png").unlink()
    message = refusal(import_isbi2012, tmp_path / "dest", mine, sources, say=lambda text: None)
    assert f"the PNG slices in {mine / 'train-volume'}: 1 of the 3 slices are missing (2.png)" in message
    (mine / "train-volume" / "2.png").write_bytes(png_bytes(stacks["train-volume"][2]))
    message = refusal(import_isbi2012, tmp_path / "dest", mine, sources, say=lambda text: None)
    looked = f"--from {mine} holds no copy of train-labels.tif: looked for {mine / 'train-labels.tif'}"
    assert message.startswith(looked)
    assert str(mine / "train-labels") in message and str(mine / "data" / "train-labels") in message
    assert leftovers(tmp_path / "dest") == ["train-volume.tif"]
    assert "is not a folder" in refusal(import_isbi2012, tmp_path / "d2", tmp_path / "nope", sources)


@needs_shared
def test_cli_from_the_project_stacks_and_from_the_mirror_png_layout(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["isbi2012", "--from", str(ISBI)])
    assert capsys.readouterr().out.split() == [str(Path("data") / "isbi2012" / f) for f in FILES]
    assert all((tmp_path / "data" / "isbi2012" / f).read_bytes() == (ISBI / f).read_bytes() for f in FILES)
    clone = tmp_path / "unet"  # a clone of zhixuhao/unet: data/membrane/train/image/0.png ...
    sources = Sources.shipped()
    for stack in sources.stacks:
        array = tifffile.imread(ISBI / stack.file)
        for (path, _), section in zip(stack.png_slices, array, strict=True):
            (clone / path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(section).save(clone / path)
    monkeypatch.setenv("SKIPEXP_DATA", str(tmp_path / "elsewhere"))
    main(["isbi2012", "--from", str(clone / "data")])  # any level of the clone will do
    out = tmp_path / "elsewhere" / "isbi2012"
    assert all((out / f).read_bytes() == (ISBI / f).read_bytes() for f in FILES)
    spec = data_spec(compose_config(["dataset=isbi2012"]).dataset)  # the same folder, no path typed
    assert spec.root == out and len(spec.read().train_images) == 26


def test_cli_refuses_bad_flags_in_one_sentence(tmp_path, capsys):
    for argv, words in [
        (["--from", str(tmp_path), "--url-base", "http://x"], "--from"),
        (["--timeout", "-1"], "--timeout=-1.0 must be a positive number"),
        (["--from", str(tmp_path / "nope")], "is not a folder"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["isbi2012", str(tmp_path / "dest"), *argv])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and words in err and "Traceback" not in err
        one_sentence(err.splitlines()[-1])
        assert not (tmp_path / "dest").exists()


def test_missing_stacks_name_the_command_with_no_path(tmp_path):
    proc = run_cli(["dataset=isbi2012", "trainer.epochs=1"], tmp_path, check=False)
    assert proc.returncode == 2 and "download the stacks with `skipexp-data isbi2012`," in proc.stderr
    proc = run_cli(["dataset=isbi2012", "dataset.root=elsewhere", "trainer.epochs=1"], tmp_path, check=False)
    assert f"`skipexp-data isbi2012 {tmp_path / 'elsewhere'}`" in proc.stderr


@pytest.mark.slow
@needs_shared
def test_fetch_then_the_isbi_preset_runs_with_no_path(server, tmp_path):
    """The acceptance path: the stacks from a local server, then ``experiment=isbi_cpu`` with no path typed."""
    base, www, _ = server
    for f in FILES:
        shutil.copy(ISBI / f, www / f)
    work = tmp_path / "work"
    work.mkdir()
    run_cli(["isbi2012", "--url-base", base], work, exe="skipexp-data")
    assert all((work / "data" / "isbi2012" / f).read_bytes() == (ISBI / f).read_bytes() for f in FILES)
    run_cli(["experiment=isbi_cpu", "trainer.epochs=1", "hydra.run.dir=r"], work)
    results = json.loads((work / "r" / "results.json").read_text())
    assert results["dataset"] == "isbi2012" and 0.0 < results["final"]["val_vrand"] <= 1.0
