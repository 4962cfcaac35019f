"""The artifact cache against a real HTTP server on loopback (no mocks).

After every fetch, good or bad, the cache must hold exactly the verified
files and nothing that could pass for one; every error is one line.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cpb.adapters.artifacts import ArtifactCache, ArtifactsMissing, Download, FetchError
from cpb.cli.app import main
from cpb.resolve.downloads import collect_downloads
from cpb.spec.model import load_spec
from helpers import build_file_tree
from httpserver import FileServer, file_server

REPO = Path(__file__).resolve().parents[1]
SMALL = b"hello artifact\n" * 100
BIG = os.urandom(3 << 20)  # big enough for progress lines and to interrupt midway


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as srv:
        srv.files.update({"small.txt": SMALL, "big.bin": BIG})
        yield srv


@pytest.fixture
def cache(tmp_path: Path) -> ArtifactCache:
    return ArtifactCache(tmp_path / "cache", timeout=5, attempts=2, backoff=0.05)


def download(url: str, data: bytes, name: str = "small.txt", **sums: str) -> Download:
    checksums = tuple(sums.items()) or (("sha256", sha256(data)),)
    key = checksums[0][1] if checksums[0][0] == "sha256" else "-".join(checksums[0])
    return Download(key=key, checksums=checksums, urls=(url,), names=(name,))


def cache_files(cache: ArtifactCache) -> list[str]:
    """Every file in the cache but the lock files: what could count as cached."""
    if not cache.root.exists():
        return []
    return sorted(str(p.relative_to(cache.root)) for p in cache.root.rglob("*")
                  if p.is_file() and p.parent.name != ".locks")


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_fetch_verifies_caches_and_hits_the_network_once(server: FileServer,
                                                         cache: ArtifactCache) -> None:
    item = download(server.url("/files/small.txt"), SMALL)
    result = cache.fetch(item)
    assert result.fetched and result.size == len(SMALL)
    assert result.path == cache.root / "sha256" / sha256(SMALL)
    assert result.path.read_bytes() == SMALL
    assert cache_files(cache) == [f"sha256/{sha256(SMALL)}"]
    again = cache.fetch(item)
    assert not again.fetched and again.path == result.path
    assert server.hits["/files/small.txt"] == 1


def test_slow_file_arrives_whole_with_progress(server: FileServer, cache: ArtifactCache) -> None:
    seen: list[tuple[int, int | None]] = []
    item = download(server.url("/slow/big.bin"), BIG, "big.bin")
    result = cache.fetch(item, lambda name, done, total: seen.append((done, total)))
    assert result.path.read_bytes() == BIG
    assert result.seconds >= 0.5
    assert len(seen) > 10 and seen[-1] == (len(BIG), len(BIG))
    assert cache_files(cache) == [f"sha256/{sha256(BIG)}"]


def test_download_broken_off_halfway_is_retried_then_leaves_nothing(
        server: FileServer, cache: ArtifactCache) -> None:
    url = server.url("/broken/big.bin")
    with pytest.raises(FetchError) as caught:
        cache.fetch(download(url, BIG, "big.bin"))
    assert one_line(caught.value) == (
        f"fetch big.bin: download of {url} broke off after {len(BIG) // 2} of {len(BIG)} "
        "bytes (gave up after 2 attempts)")
    assert server.hits["/broken/big.bin"] == 2
    assert cache_files(cache) == []
    assert not cache.has(sha256(BIG))


def test_404_is_not_retried_and_leaves_nothing(server: FileServer, cache: ArtifactCache) -> None:
    url = server.url("/files/nothing-here.whl")
    with pytest.raises(FetchError) as caught:
        cache.fetch(download(url, b"x", "nothing-here.whl"))
    assert one_line(caught.value) == f"fetch nothing-here.whl: HTTP 404 Not Found from {url}"
    assert server.hits["/files/nothing-here.whl"] == 1
    assert cache_files(cache) == []


def test_wrong_checksum_names_artifact_expected_and_actual(server: FileServer,
                                                           cache: ArtifactCache) -> None:
    url = server.url("/files/small.txt")
    wrong = sha256(b"something else")
    with pytest.raises(FetchError) as caught:
        cache.fetch(download(url, SMALL, sha256=wrong))
    assert one_line(caught.value) == (
        f"fetch small.txt: sha256 mismatch for {url}: expected {wrong}, "
        f"got {sha256(SMALL)}; nothing was cached")
    assert cache_files(cache) == []
    assert server.hits["/files/small.txt"] == 1  # a wrong file is not asked for again


def test_every_declared_checksum_is_checked(server: FileServer, cache: ArtifactCache) -> None:
    url = server.url("/files/small.txt")
    good_md5 = hashlib.md5(SMALL).hexdigest()  # noqa: S324
    result = cache.fetch(download(url, SMALL, md5=good_md5))
    assert result.path == cache.root / "md5" / good_md5
    with pytest.raises(FetchError, match="sha1 mismatch"):
        cache.fetch(download(url, SMALL, sha256=sha256(SMALL), sha1="0" * 40))
    assert cache_files(cache) == [f"md5/{good_md5}"]


def test_transient_503_is_retried_with_backoff(server: FileServer, tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "c", attempts=3, backoff=0.1)
    started = time.monotonic()
    result = cache.fetch(download(server.url("/flaky/small.txt"), SMALL))
    assert result.path.read_bytes() == SMALL
    assert server.hits["/flaky/small.txt"] == 3
    assert time.monotonic() - started >= 0.3  # waited 0.1 s, then 0.2 s


def test_unreachable_host_is_one_line_after_bounded_retries(cache: ArtifactCache) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError) as caught:
        cache.fetch(download(f"http://127.0.0.1:{port}/x.whl", b"x", "x.whl"))
    assert one_line(caught.value) == (
        f"fetch x.whl: cannot reach 127.0.0.1:{port} (Connection refused) "
        "(gave up after 2 attempts)")
    assert cache_files(cache) == []


def test_a_server_that_stops_sending_times_out(server: FileServer, tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "c", timeout=0.5, attempts=1)
    url = server.url("/stall/big.bin")
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        cache.fetch(download(url, BIG, "big.bin"))
    assert time.monotonic() - started < 5
    assert one_line(caught.value) == (
        f"fetch big.bin: 127.0.0.1:{server.server_address[1]} sent nothing for 0.5 s after "
        f"{len(BIG) // 2} bytes of {url} (gave up after 1 attempts)")
    assert cache_files(cache) == []


def test_file_url(tmp_path: Path, cache: ArtifactCache) -> None:
    source = tmp_path / "local.tar"
    source.write_bytes(SMALL)
    result = cache.fetch(download(source.as_uri(), SMALL, "local.tar"))
    assert result.path.read_bytes() == SMALL
    with pytest.raises(FetchError) as caught:
        cache.fetch(download((tmp_path / "gone.tar").as_uri(), b"gone", "gone.tar"))
    assert "No such file or directory" in one_line(caught.value)


def test_offline_uses_only_the_cache(server: FileServer, tmp_path: Path) -> None:
    online = ArtifactCache(tmp_path / "c")
    offline = ArtifactCache(tmp_path / "c", offline=True)
    cached = download(server.url("/files/small.txt"), SMALL)
    online.fetch(cached)
    assert not offline.fetch(cached).fetched
    missing = download(server.url("/files/big.bin"), BIG, "big.bin")
    with pytest.raises(ArtifactsMissing) as caught:
        offline.fetch(missing)
    assert one_line(caught.value) == (
        f"offline, and 1 artifact(s) are not in the cache {tmp_path / 'c'}: big.bin (sha256 "
        f"{sha256(BIG)[:12]}) from {missing.urls[0]}; run `cpb fetch` while online")
    assert server.hits["/files/big.bin"] == 0


# -- the command line, and several processes ---------------------------------

def project(tmp_path: Path, server: FileServer, *entries: tuple[str, bytes]) -> Path:
    lines = "".join(f"      - url: {server.url(path)}\n        sha256: {sha256(data)}\n"
                    for path, data in entries)
    build_file_tree(tmp_path / "proj", {"base.tar": "tar", "cpb.yaml": (
        "project: p\nimages:\n  img:\n    rootfs: {tar: base.tar}\n    artifacts:\n" + lines)})
    return tmp_path / "proj" / "cpb.yaml"


def cpb_process(spec: Path, cache_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-m", "cpb", "-f", str(spec), "--cache-dir",
                             str(cache_dir), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_cli_fetch_reports_each_failure_in_one_line(
        server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = project(tmp_path, server, ("/files/small.txt", SMALL), ("/files/gone.whl", b"gone"),
                   ("/slow/big.bin", BIG))
    code = main(["-f", str(spec), "--cache-dir", str(tmp_path / "c"), "fetch"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == f"3 artifact(s): 2 fetched, 0 already cached, 1 failed ({tmp_path / 'c'})\n"
    url = server.url("/files/gone.whl")
    assert f"  FAIL fetch gone.whl: HTTP 404 Not Found from {url}\n" in err
    # the reason once, on its FAIL line; the last line only sums up
    assert err.count("HTTP 404") == 1
    assert err.splitlines()[-1] == ("cpb: error: 1 of 3 artifact(s) failed to fetch: gone.whl "
                                    "(see FAIL above)")
    assert "big.bin: " in err and "(100%)" in err  # progress for the large download
    assert "Traceback" not in err
    assert sorted(cache_files(ArtifactCache(tmp_path / "c"))) == sorted(
        [f"sha256/{sha256(SMALL)}", f"sha256/{sha256(BIG)}"])

    code = main(["-f", str(spec), "--cache-dir", str(tmp_path / "c"), "--offline", "fetch"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("cpb: error: offline, and 1 artifact(s) are not in the cache ")
    assert "gone.whl (sha256 " in err and err.count("\n") == 1


def test_two_processes_fetching_the_same_artifact_download_it_once(
        server: FileServer, tmp_path: Path) -> None:
    server.slow_seconds = 2.0
    spec = project(tmp_path, server, ("/slow/big.bin", BIG))
    first = cpb_process(spec, tmp_path / "c", "fetch")
    second = cpb_process(spec, tmp_path / "c", "fetch")
    outs = [p.communicate(timeout=60) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    assert sorted(out for out, _ in outs) == [
        f"1 artifact(s): 0 fetched, 1 already cached, 0 failed ({tmp_path / 'c'})\n",
        f"1 artifact(s): 1 fetched, 0 already cached, 0 failed ({tmp_path / 'c'})\n"]
    assert server.hits["/slow/big.bin"] == 1
    cache = ArtifactCache(tmp_path / "c")
    assert cache.path(sha256(BIG)).read_bytes() == BIG
    assert cache_files(cache) == [f"sha256/{sha256(BIG)}"]


def test_killed_download_never_counts_as_cached(server: FileServer, tmp_path: Path) -> None:
    server.slow_seconds = 10.0
    spec = project(tmp_path, server, ("/slow/big.bin", BIG))
    process = cpb_process(spec, tmp_path / "c", "fetch")
    partial = tmp_path / "c" / ".tmp"
    deadline = time.monotonic() + 20
    while not any(p.stat().st_size > 0 for p in partial.glob("*.part")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    cache = ArtifactCache(tmp_path / "c")
    assert not cache.has(sha256(BIG))
    assert [p.parent.name for p in partial.glob("*.part")] == [".tmp"]  # left by the kill

    server.slow_seconds = 0.2
    (key, item), = collect_downloads(load_spec(spec)).items()
    assert cache.fetch(item).fetched
    assert cache_files(cache) == [f"sha256/{sha256(BIG)}"]  # the leftover was removed


@pytest.mark.parametrize(("sig", "code", "said"), [
    (signal.SIGINT, 130, "interrupted; everything finished so far is kept"),
    (signal.SIGTERM, 143, "terminated; everything finished so far is kept")])
def test_an_interrupt_stops_a_download_that_stalls_mid_body(
        server: FileServer, tmp_path: Path, sig: int, code: int, said: str) -> None:
    """The server sends half the file, then nothing for 30 s; cpb's read timeout is 30 s
    and it tries 3 times. Ctrl-C and SIGTERM end `cpb fetch` at once all the same."""
    spec = project(tmp_path, server, ("/stall/big.bin", BIG), ("/stall/other.bin", SMALL))
    process = cpb_process(spec, tmp_path / "c", "fetch")
    deadline = time.monotonic() + 20
    while server.hits["/stall/big.bin"] == 0 or not any(
            p.stat().st_size > 0 for p in (tmp_path / "c" / ".tmp").glob("*.part")):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # well into the stall
    process.send_signal(sig)
    started = time.monotonic()
    out, err = process.communicate(timeout=20)
    took = time.monotonic() - started
    assert took < 5, (process.returncode, took, err)
    assert process.returncode == code
    assert err.splitlines()[-1] == said and "Traceback" not in err, err
    assert out == ""
    assert cache_files(ArtifactCache(tmp_path / "c")) == []  # no partial file, nothing cached
    assert server.hits["/stall/big.bin"] == 1  # no second attempt after the interrupt


def test_artifact_add_prints_the_entry(server: FileServer, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    url = server.url("/files/small.txt")
    code = main(["--cache-dir", str(tmp_path / "c"), "artifact", "add", url])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert yaml.safe_load(out) == [{"url": url, "sha256": sha256(SMALL), "size": len(SMALL)}]
    assert ArtifactCache(tmp_path / "c").path(sha256(SMALL)).read_bytes() == SMALL
    assert cache_files(ArtifactCache(tmp_path / "c")) == [f"sha256/{sha256(SMALL)}"]

    code = main(["--cache-dir", str(tmp_path / "c"), "artifact", "add",
                 server.url("/files/missing.whl")])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err == ("cpb: error: fetch missing.whl: HTTP 404 Not Found from "
                   f"{server.url('/files/missing.whl')}\n")
    assert cache_files(ArtifactCache(tmp_path / "c")) == [f"sha256/{sha256(SMALL)}"]


def test_cache_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv("CPB_CACHE_DIR", str(tmp_path / "env-cache"))
    assert ArtifactCache().root == tmp_path / "env-cache"
    monkeypatch.delenv("CPB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ArtifactCache().root == tmp_path / "xdg" / "cpb" / "artifacts"
