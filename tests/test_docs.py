"""The documentation is tested: README.md and docs/*.md against the real loader and CLI.

Conventions for the pages:
- a ```yaml block whose top level has `project:` is a whole cpb.yaml: it is
  loaded and validated with cpb's real loader (modules it names are stubbed,
  files it names are created empty, so only the spec itself is checked);
- a block whose first line is `# part of cpb.yaml` is a fragment: it is
  completed (a `project:`, a stub image for each image it names but does not
  define) and loaded the same way, so its values meet the same rules;
- a block with `tasks:` is a job file (`cpb submit`): it is checked with the
  job loader;
- any other block that has one of cpb.yaml's top-level keys must say what it
  is in a first-line comment (`# .gitlab-ci.yml`), or it would escape the checks;
- every `cpb …` line in a ```sh block is parsed by the real CLI (click's
  parser, nothing runs);
- every quoted `cpb: error: …` line is produced by a case in QUOTED, in-process,
  and compared word for word ("…" in a quote stands for what differs per run:
  a path, a hash).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from cpb.cli.app import cli
from cpb.errors import SpecError
from cpb.spec.model import load_spec
from cpb.spec.schema import SCHEMA

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(kind: str) -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == kind:
                line = text[:match.start()].count("\n") + 2
                found.append((page.relative_to(REPO).as_posix(), line, match.group(2)))
    return found


FRAGMENT = "# part of cpb.yaml"
STUB_IMAGE = {"from": "docker.io/library/busybox:1"}


def specs() -> list[tuple[str, int, str]]:
    """Whole cpb.yaml files, and fragments completed into one."""
    out = []
    for page, line, body in blocks("yaml"):
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError:
            continue
        if body.startswith(FRAGMENT):
            out.append((page, line, yaml.safe_dump(completed(data), sort_keys=False)))
        elif isinstance(data, dict) and "project" in data and "images" in data:
            out.append((page, line, body))
    return out


def completed(data: dict[str, object]) -> dict[str, object]:
    """A fragment as a whole cpb.yaml: a project, and a stub for every image it uses."""
    data = {"project": "docs", **data}
    images: dict[str, object] = dict(data.get("images") or {})  # type: ignore[call-overload]
    used = {str(c["image"]) for pod in (data.get("pods") or {}).values()  # type: ignore[attr-defined]
            for c in pod.get("containers", [])}
    used |= {str(i["from"]) for i in images.values() if isinstance(i, dict) and "from" in i
             and not re.search(r"[/:@]", str(i["from"]))}
    for name in sorted(used - set(images)) or (["stub"] if not images else []):
        images[name] = dict(STUB_IMAGE)
    data["images"] = images
    return data


def jobs() -> list[tuple[str, int, str]]:
    out = []
    for page, line, body in blocks("yaml"):
        data = yaml.safe_load(body)
        if isinstance(data, dict) and "tasks" in data:
            out.append((page, line, body))
    return out


def test_a_block_with_cpb_yaml_keys_is_checked_or_says_what_it_is() -> None:
    top = set(SCHEMA["properties"])
    for page, line, body in blocks("yaml"):
        data = yaml.safe_load(body)
        if not isinstance(data, dict) or not top & set(data):
            continue
        whole = "project" in data and "images" in data
        assert whole or body.startswith(FRAGMENT) or body.startswith("# "), (
            f"{page}:{line}: a block with cpb.yaml keys that is not a whole cpb.yaml: start it "
            f"with '{FRAGMENT}' (it is then validated), or a comment saying what it is")
        if body.startswith(FRAGMENT):
            assert set(data) <= top, f"{page}:{line}: not cpb.yaml keys: {set(data) - top}"


@pytest.mark.parametrize(("page", "line", "body"), jobs(),
                         ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_every_job_file_in_the_docs_loads(page: str, line: int, body: str,
                                          tmp_path: Path) -> None:
    from cpb.cli.submit import load_job

    (tmp_path / "job.yaml").write_text(body)
    try:
        load_job(tmp_path / "job.yaml")
    except SpecError as exc:
        pytest.fail(f"{page}:{line}: {exc}")


def command_lines() -> list[tuple[str, int, list[str]]]:
    out = []
    for page, line, body in blocks("sh"):
        for offset, text in enumerate(body.splitlines()):
            code = text.split(" #", 1)[0].strip()
            for part in re.split(r"&&|\|\||;|\||>", code):
                words = part.strip()
                if not words.startswith("cpb "):
                    continue
                try:
                    argv = shlex.split(words)[1:]
                except ValueError:
                    continue
                if any(w in ("/", "...", "…") or w.startswith(("[", "<")) for w in argv):
                    continue  # a sketch of several commands or optional parts
                out.append((page, line + offset, argv))
    return out


def test_the_pages_have_specs_and_commands() -> None:
    assert specs() and len(command_lines()) >= 20 and jobs()
    assert sum(body.startswith(FRAGMENT) for _, _, body in blocks("yaml")) >= 5


@pytest.mark.parametrize(("page", "line", "body"), specs(),
                         ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_every_cpb_yaml_in_the_docs_loads(page: str, line: int, body: str,
                                           tmp_path: Path) -> None:
    spec_file = tmp_path / "cpb.yaml"
    spec_file.write_text(body)
    data = yaml.safe_load(body)
    for pod in (data.get("pods") or {}).values():
        for container in pod.get("containers", []):
            for volume in container.get("volumes", []):
                if "host" in volume and not str(volume["host"]).startswith("/"):
                    (tmp_path / volume["host"]).mkdir(parents=True, exist_ok=True)
    for image in (data.get("images") or {}).values():
        for name in (image or {}).get("modules") or []:
            mod = tmp_path / "modules" / str(name)
            mod.mkdir(parents=True, exist_ok=True)
            (mod / "module.yaml").write_text(
                f"schema_version: 1\nname: {name}\nversion: '1.0'\n")
        for artifact in (image or {}).get("artifacts") or []:
            if isinstance(artifact, dict) and "path" in artifact:
                target = tmp_path / artifact["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"")
        tar = ((image or {}).get("rootfs") or {}).get("tar")
        if isinstance(tar, str):
            (tmp_path / tar).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / tar).write_bytes(b"")
    try:
        load_spec(spec_file)
    except SpecError as exc:
        pytest.fail(f"{page}:{line}: {exc}")


@pytest.mark.parametrize(("page", "line", "argv"), command_lines(),
                         ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_every_cpb_command_in_the_docs_parses(page: str, line: int, argv: list[str]) -> None:
    try:
        with cli.make_context("cpb", list(argv), resilient_parsing=False) as ctx:
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if rest:
                name, command, args = cli.resolve_command(ctx, rest)
                assert command is not None, name
                command.make_context(name or "", args, parent=ctx).close()
    except click.exceptions.Exit:
        pass  # --help, --version
    except click.UsageError as exc:
        pytest.fail(f"{page}:{line}: cpb {shlex.join(argv)}: {exc.format_message()}")


def test_no_page_installs_the_unrelated_pypi_cpb() -> None:
    """`cpb` on PyPI is another project; ours is the distribution computepods-builder."""
    assert 'name = "computepods-builder"' in (REPO / "pyproject.toml").read_text()
    for page in PAGES:
        assert not re.search(r"(?<!`)pip install (-\S+ )*cpb\b(?![-`])", page.read_text()), page


# -- error lines quoted in the pages, produced and compared word for word -------------

INLINE_QUOTE = re.compile(r"`(cpb: error: [^`]+)`")
# Where a page names the start of a message without quoting one.
NOT_QUOTES = {"cpb: error: registry HOST"}


def quoted_errors() -> set[str]:
    """Whole lines (in a code block) and inline code spans that start with `cpb: error:`."""
    found = set()
    for page in PAGES:
        for line in page.read_text().splitlines():
            if line.strip().startswith("cpb: error: "):
                found.add(line.strip())
            else:
                found.update(m.group(1) for m in INLINE_QUOTE.finditer(line))
    return found - NOT_QUOTES


def cli_error(tmp_path: Path, spec: str, *argv: str, files: dict[str, str] | None = None,
              runner: object | None = None) -> str:
    """The last stderr line of `cpb -f cpb.yaml ARGV`, in-process."""
    import contextlib
    import io

    from cpb.cli.app import main
    from helpers import build_file_tree

    build_file_tree(tmp_path, {"cpb.yaml": spec, **(files or {})})
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        if runner is not None:
            patch.setattr("cpb.cli.options.make_runner", lambda *lock: runner)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(["-f", str(tmp_path / "cpb.yaml"), *argv])
    return err.getvalue().splitlines()[-1]


def readme_spec() -> str:
    return next(body for page, _, body in specs() if page == "README.md")


def _misspelt_key(tmp_path: Path) -> str:
    spec = readme_spec().replace("    modules: [compile-worker]", "    modlues: [compile-worker]")
    return cli_error(tmp_path, spec, "plan")


def _replicas(tmp_path: Path) -> str:
    spec = ("\nproject: farm\nimages:\n  base:\n    rootfs: {tar: base.tar}\n  web:\n"
            "    from: base\n    ports: [8080]\n  quiet:\n    from: base\npods:\n  web:\n"
            "    containers:\n      - image: quiet\n        replicas: 3\n      - image: web\n"
            "        replicas: 2\n")
    return cli_error(tmp_path, spec, "kube", "web", files={"base.tar": ""})


def _host_path(tmp_path: Path) -> str:
    spec = ("project: p\nimages:\n  base:\n    rootfs: {tar: base.tar}\npods:\n  farm:\n"
            "    containers:\n      - image: base\n        volumes: [{host: /, mount: /h}]\n")
    return cli_error(tmp_path, spec, "plan", files={"base.tar": ""})


def _unreachable(tmp_path: Path) -> str:
    import socket

    def no_such_host(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(-2, "Name or service not known")  # what DNS says, any machine

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", no_such_host)
        return cli_error(tmp_path, "project: p\nimages: {a: {from: 'x:1'}}\n", "--cache-dir",
                         str(tmp_path / "c"), "artifact", "add",
                         "https://files.example.org/x.whl")


def _fetch_summary(tmp_path: Path) -> str:
    import hashlib

    files = {"a.whl": b"a", "b.whl": b"b", "x.whl": b"x"}
    entries = ""
    for name, data in files.items():
        if name != "x.whl":  # x.whl is missing
            (tmp_path / name).write_bytes(data)
        entries += (f"      - url: {(tmp_path / name).as_uri()}\n"
                    f"        sha256: {hashlib.sha256(data).hexdigest()}\n")
    spec = f"project: p\nimages:\n  a:\n    from: 'x:1'\n    artifacts:\n{entries}"
    return cli_error(tmp_path / "p", spec, "--cache-dir", str(tmp_path / "c"), "fetch")


def _key_mode(tmp_path: Path) -> str:
    from cpb.security.pki import check_key_mode

    key = tmp_path / "pki" / "3f1c0a" / "submitter.key"
    key.parent.mkdir(parents=True)
    key.write_text("secret")
    key.chmod(0o644)
    with pytest.raises(SpecError.__mro__[1]) as caught:  # CpbError: the CLI's one line
        check_key_mode(key)
    return f"cpb: error: {caught.value}"


def _disk_full(tmp_path: Path) -> str:
    import errno

    from fakes import podman_fake

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("cpb.state.os.fsync", no_space)
        return cli_error(tmp_path, "project: p\nimages:\n  a: {from: 'x:1'}\n", "build",
                         runner=podman_fake())


def _image_in_use(tmp_path: Path) -> str:
    """The README's project; podman's answers as a running pod `farm` gives them (the
    behaviour itself: tests/integration/test_clean.py, on real podman)."""
    import json

    from fakes import FakeRunner

    runner = FakeRunner()
    store = runner.storage
    for tag in ("web:latest", "web:cpb-0123456789ab"):
        store.add_image("i1", [f"localhost/my-farm/{tag}"], {})
    container = {"Id": "c1", "Names": ["my-farm-farm-web"], "ImageID": "i1",
                 "Image": "localhost/my-farm/web:cpb-0123456789ab", "State": "running",
                 "Pod": "p1", "PodName": "my-farm-farm"}
    pod = {"Name": "my-farm-farm", "Id": "p1", "Status": "Running",
           "Labels": {"io.cpb.pod": "farm", "io.cpb.project": "my-farm"}}
    (runner.on("podman", "images", "--all", returns=json.dumps([{"Id": "i1", "ParentId": ""}]))
     .on("podman", "images", does=store.podman_images)
     .on("buildah", "images", does=store.buildah_images)
     .on("podman", "ps", returns=json.dumps([container]))
     .on("podman", "pod", "ps", returns=json.dumps([pod])))
    return cli_error(tmp_path, "project: my-farm\nimages:\n  web: {from: 'x:1'}\n", "clean",
                     "--images", runner=runner)


QUOTED = {
    "cpb: error: cpb.yaml:16:5: images.worker-gcc.modlues: unknown key 'modlues' (did you mean "
    "'modules'?)": _misspelt_key,
    "cpb: error: cpb.yaml:16:19: pods.web.containers[1].replicas: 2 replicas of 'web' cannot "
    "run in one Podman pod: it listens on 8080 and the pod's containers share one network, so "
    "only one replica could bind it; use replicas: 1 for `cpb up`, or `cpb kube --cluster` "
    "(each replica its own pod)": _replicas,
    "cpb: error: cpb.yaml:9:26: pods.farm.containers[0].volumes[0].host: the host folder / is "
    "outside the project; a project cannot use host paths on its own: if you trust it, allow "
    "it with `cpb --allow-host-path / ...` or CPB_ALLOW_HOST_PATHS=/": _host_path,
    "cpb: error: fetch x.whl: cannot reach files.example.org (Name or service not known) (gave "
    "up after 3 attempts)": _unreachable,
    "cpb: error: …/pki/3f1c…/submitter.key: private key is mode 0644, readable by others; it "
    "may have leaked: run `cpb pki rotate` to make new keys": _key_mode,
    "cpb: error: 1 of 3 artifact(s) failed to fetch: x.whl (see FAIL above)": _fetch_summary,
    "cpb: error: no space left on device writing .cpb/…; images built so far are kept":
        _disk_full,
    "cpb: error: nothing was removed: my-farm/web:latest is used by pod farm (my-farm-farm); "
    "stop the project's pods first (`cpb down farm`), or run `cpb clean --images --down`":
        _image_in_use,
}


def test_every_quoted_error_has_a_case() -> None:
    assert quoted_errors() == set(QUOTED)


@pytest.mark.parametrize("quote", sorted(QUOTED))
def test_every_quoted_error_is_what_cpb_says(quote: str, tmp_path: Path) -> None:
    produced = QUOTED[quote](tmp_path)
    pattern = ".+".join(re.escape(part) for part in quote.split("…"))
    assert re.fullmatch(pattern, produced), f"the docs say:\n{quote}\ncpb says:\n{produced}"


def test_reliability_quotes_what_the_bad_input_corpus_says() -> None:
    """docs/reliability.md's bad-input rows quote messages; the cases they cite
    (tests/data/bad-specs, each checked word for word by test_bad_specs.py) say them."""
    import json

    expected = json.loads((REPO / "tests/data/bad-specs/expected.json").read_text())
    text = (REPO / "docs/reliability.md").read_text()
    section = text.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    checked = 0
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) < 3 or "test_" in cells[-1] or not re.search(r"\d", cells[-1]):
            continue
        numbers: set[int] = set()
        for first, last in re.findall(r"(\d+)(?:–(\d+))?", cells[-1]):
            numbers |= set(range(int(first), int(last or first) + 1))
        said = [v["stderr"] for k, v in expected.items() if int(k.split("-")[0]) in numbers]
        for quote in re.findall(r"`([^`]+)`", cells[1]):
            pieces = [p for p in re.split(r"\(\.\.\.\)|\.\.\.|…", quote) if p.strip()]
            assert any(all(p in s for p in pieces) for s in said), (cells[-1], quote)
            checked += 1
    assert checked >= 20


def test_the_benchmarks_duration_is_said_the_same_everywhere() -> None:
    said = {path: re.findall(r"~(\d+) min", (REPO / path).read_text()[:800])
            for path in ("tests/benchmarks/bench.py", "dodo.py", "docs/benchmarks.md")}
    assert len({tuple(v) for v in said.values()}) == 1 and all(said.values()), said
