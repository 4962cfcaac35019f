"""Downloads and YAML a stranger's project controls (issue 19): what they may not do.

A real HTTP server on loopback (tests/httpserver.py) serves the files,
redirects and length-less answers.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpb.adapters.artifacts import ArtifactCache, Download, FetchError, parse_size
from cpb.cli.app import main
from cpb.errors import SpecError
from cpb.resolve.downloads import collect_downloads
from cpb.spec.model import load_spec
from helpers import build_file_tree
from httpserver import FileServer, file_server

DATA = os.urandom(300_000)
SUM = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as srv:
        srv.files["data.bin"] = DATA
        yield srv


@pytest.fixture
def cache(tmp_path: Path) -> ArtifactCache:
    return ArtifactCache(tmp_path / "cache", timeout=5, attempts=1, backoff=0.01)


def download(url: str, size: int | None = None, checksum: str = SUM) -> Download:
    return Download(key=checksum, checksums=(("sha256", checksum),), urls=(url,),
                    names=("data.bin",), size=size)


def nothing_cached(cache: ArtifactCache) -> bool:
    return not [p for p in cache.root.rglob("*") if p.is_file() and p.parent.name != ".locks"]


# -- redirects -----------------------------------------------------------------------

@pytest.mark.parametrize("target", ["ftp://127.0.0.1/data.bin", "file:///etc/hostname"])
def test_a_redirect_to_another_scheme_is_not_followed(server: FileServer, cache: ArtifactCache,
                                                     target: str) -> None:
    server.redirects["/go"] = target
    with pytest.raises(FetchError) as info:
        cache.fetch(download(server.url("/go")))
    assert str(info.value) == (f"fetch data.bin: {server.url('/go')}: redirected to {target}, "
                               "which cpb does not follow (only http:// and https://)")
    assert nothing_cached(cache)


def test_a_redirect_to_http_is_followed(server: FileServer, cache: ArtifactCache) -> None:
    server.redirects["/go"] = server.url("/files/data.bin")
    assert cache.fetch(download(server.url("/go"))).size == len(DATA)


# -- size ----------------------------------------------------------------------------

def test_the_size_cap_stops_a_download_without_a_length_while_it_streams(
        server: FileServer, tmp_path: Path) -> None:
    server.files["huge.bin"] = bytes(32 << 20)
    cache = ArtifactCache(tmp_path / "cache", timeout=5, attempts=1, max_size=1 << 20)
    url = server.url("/nolength/huge.bin")
    with pytest.raises(FetchError) as info:
        cache.fetch(download(url, checksum="0" * 64))
    assert str(info.value) == (
        f"fetch data.bin: {url} sent more than the limit of 1048576 bytes for an artifact "
        "without `size:` (declare its `size:`, or raise $CPB_MAX_DOWNLOAD); stopped, "
        "nothing was cached")
    assert nothing_cached(cache)
    time.sleep(0.2)
    # The download stopped near the cap (plus what the sockets buffer), long
    # before the 32 MiB the server had.
    assert server.sent["/nolength/huge.bin"] < 16 << 20


def test_an_announced_length_over_the_cap_is_refused_before_reading(
        server: FileServer, tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", timeout=5, attempts=1, max_size=100_000)
    url = server.url("/files/data.bin")
    with pytest.raises(FetchError, match=r"is 300000 bytes, over the limit of 100000 bytes"):
        cache.fetch(download(url))
    assert nothing_cached(cache)


def test_a_declared_size_is_the_cap_and_must_match(server: FileServer,
                                                   tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", timeout=5, attempts=1, max_size=1000)
    url = server.url("/nolength/data.bin")
    with pytest.raises(FetchError, match=r"sent more than its `size:` of 299999 bytes"):
        cache.fetch(download(url, size=len(DATA) - 1))
    with pytest.raises(FetchError, match=r"has 300000 bytes, not the 300001 of its `size:`"):
        cache.fetch(download(url, size=len(DATA) + 1))
    assert nothing_cached(cache)
    # the declared size is allowed past the default cap
    assert cache.fetch(download(url, size=len(DATA))).size == len(DATA)


def test_size_in_the_spec(tmp_path: Path) -> None:
    spec = ("project: p\nimages:\n  a:\n    from: 'x:1'\n    artifacts:\n"
            f"      - {{url: 'https://h.example/d.bin', sha256: {SUM}, size: 300000}}\n"
            f"      - {{url: 'https://h.example/e.bin', sha256: '{'1' * 64}'}}\n")
    build_file_tree(tmp_path, {"cpb.yaml": spec})
    downloads = collect_downloads(load_spec(tmp_path / "cpb.yaml"))
    assert downloads[SUM].size == 300000 and downloads["1" * 64].size is None
    build_file_tree(tmp_path, {"cpb.yaml": spec.replace("300000", "-1")})
    with pytest.raises(SpecError, match=r"cpb.yaml:\d+:\d+: .*size"):
        load_spec(tmp_path / "cpb.yaml")


@pytest.mark.parametrize(("text", "size"), [("1000", 1000), ("500M", 500_000_000),
                                            ("4GiB", 4 << 30), ("64 KiB", 64 << 10),
                                            ("2G", 2_000_000_000), ("lots", None), ("5X", None)])
def test_cap_sizes(text: str, size: int | None) -> None:
    assert parse_size(text) == size


def test_the_cap_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    assert ArtifactCache(tmp_path).max_size == 2 << 30
    monkeypatch.setenv("CPB_MAX_DOWNLOAD", "100k")
    assert ArtifactCache(tmp_path).max_size == 100_000
    monkeypatch.setenv("CPB_MAX_DOWNLOAD", "much")
    with pytest.raises(FetchError, match="CPB_MAX_DOWNLOAD='much' is not a size"):
        ArtifactCache(tmp_path)


# -- checksum messages ----------------------------------------------------------------------

def test_a_file_url_mismatch_does_not_tell_the_files_hash(tmp_path: Path,
                                                          cache: ArtifactCache) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"a host file")
    wrong = "2" * 64
    with pytest.raises(FetchError) as info:
        cache.fetch(download(victim.as_uri(), checksum=wrong))
    assert str(info.value) == (f"fetch data.bin: sha256 mismatch for {victim.as_uri()}: "
                               f"expected {wrong}; nothing was cached")
    assert hashlib.sha256(b"a host file").hexdigest() not in str(info.value)


def test_a_path_artifact_outside_the_project_mismatch_does_not_tell_its_hash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "host" / "secret.txt"
    outside.parent.mkdir()
    outside.write_bytes(b"host secret")
    monkeypatch.setenv("CPB_ALLOW_HOST_PATHS", str(outside.parent))  # the user's consent
    wrong = "3a" * 32
    build_file_tree(tmp_path / "proj", {
        "cpb.yaml": ("project: p\nimages:\n  a:\n    rootfs: {tar: b.tar}\n    artifacts:\n"
                     f"      - {{path: {outside}, sha256: {wrong}}}\n"
                     f"      - {{path: inside.txt, sha256: {wrong}}}\n"),
        "b.tar": "x", "inside.txt": "mine"})
    assert main(["-f", str(tmp_path / "proj/cpb.yaml"), "plan"]) == 2
    err = capsys.readouterr().err
    assert err == ("cpb: error: cpb.yaml:6:16: images.a.artifacts[0].path: "
                   f"artifact secret.txt ({outside}): sha256 mismatch: "
                   f"expected {wrong}\n")
    assert hashlib.sha256(b"host secret").hexdigest() not in err
    # inside the project the actual sum is the project's own business, and shown
    build_file_tree(tmp_path / "proj", {"cpb.yaml": (
        "project: p\nimages:\n  a:\n    rootfs: {tar: b.tar}\n    artifacts:\n"
        f"      - {{path: inside.txt, sha256: {wrong}}}\n")})
    assert main(["-f", str(tmp_path / "proj/cpb.yaml"), "plan"]) == 2
    assert f"got {hashlib.sha256(b'mine').hexdigest()}" in capsys.readouterr().err


# -- YAML ------------------------------------------------------------------------------------

def test_a_big_string_aliased_many_times_is_refused_by_size(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = "x" * (1 << 20)
    aliases = "".join(f"  k{i}: *big\n" for i in range(1000))
    build_file_tree(tmp_path, {"cpb.yaml": f"project: p\nx-big: &big {big}\nlabels:\n{aliases}"
                                           "images: {}\n"})
    started = time.monotonic()
    assert main(["-f", str(tmp_path / "cpb.yaml"), "plan"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cpb: error: cpb.yaml: document expands to ")
    assert "bytes of text through aliases, over the limit of 20971520 (a YAML bomb?)" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert time.monotonic() - started < 10


def test_a_few_aliases_of_a_small_anchor_still_load(tmp_path: Path) -> None:
    build_file_tree(tmp_path, {
        "cpb.yaml": ("project: p\nimages:\n  a:\n    from: 'x:1'\n    env: &env {A: '1', B: '2'}\n"
                     "  b:\n    from: 'x:1'\n    env: *env\n")})
    spec = load_spec(tmp_path / "cpb.yaml")
    assert spec.images["b"].env == spec.images["a"].env
