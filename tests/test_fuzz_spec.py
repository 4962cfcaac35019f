"""Property: load_spec returns a valid spec or raises SpecError, whatever it is fed.

Two sources of documents: structures close to the real schema (right keys,
mostly right shapes, some wrong types and stray keys), dumped as YAML; and
raw text and bytes, for the parser's own corners.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpb.errors import SpecError
from cpb.graph import expand_graph
from cpb.spec.model import ProjectSpec, load_spec
from cpb.spec.schema import SCHEMA
from cpb.tasks.table import TASK_KINDS
from helpers import build_file_tree

FILES = {
    "base.tar": "x",
    "files/tool.tar.gz": "payload",
    "modules/worker/module.yaml": "name: worker\nversion: \"1\"\n",
    "modules/worker/install.sh": "echo hi\n",
}
IMAGE_KEYS = sorted(SCHEMA["$defs"]["image"]["properties"])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000),
                    st.floats(allow_nan=False), st.text(max_size=12),
                    st.sampled_from(["base", "worker", "base.tar", "files/tool.tar.gz", "/opt",
                                     "..", "debian:12", "a;b", "bookworm", "apt-get", "x\ny"]))
anything = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(IMAGE_KEYS + ["x", "name", "from", "tar", "path"]),
                    inner, max_size=3)), max_leaves=8)
names = st.sampled_from(["base", "worker", "a", "b", "Bad Name", "x;y", ""])
origin = st.one_of(
    st.fixed_dictionaries({"rootfs": st.one_of(
        st.just({"tar": "base.tar"}), st.just({"tar": "nope.tar"}),
        st.fixed_dictionaries({"debootstrap": st.fixed_dictionaries(
            {"suite": st.sampled_from(["bookworm", "Bad;", 12])})}),
        anything)}),
    st.fixed_dictionaries({"from": st.one_of(names, st.just("debian:12"), anything)}),
    st.just({}))
image_extras = st.dictionaries(st.sampled_from(IMAGE_KEYS + ["modlues", "x"]), st.one_of(
    anything,
    st.lists(st.sampled_from(["worker", "missing", "../etc"]), max_size=2),
    st.lists(st.fixed_dictionaries({"path": st.sampled_from(["files/tool.tar.gz", "nope"])},
                                   optional={"dest": st.sampled_from(["/opt", "opt", "/a/.."]),
                                             "name": st.sampled_from(["t", "..", "a/b"])}),
             max_size=2),
    st.dictionaries(st.sampled_from(["A", "B_1", "bad key"]), scalars, max_size=2)),
    max_size=4)
image = st.builds(lambda o, e: {**e, **o}, origin, image_extras)
# Mostly valid: small, well-typed changes to a good spec, so that the
# normalisation after validation (merging, references, cycles) is exercised too.
good_extras = st.fixed_dictionaries({}, optional={
    "version": st.sampled_from(["1", "2.0", "latest", "1.0\n"]),
    "modules": st.lists(st.sampled_from(["worker", "apt-clean", "missing"]), max_size=2),
    "packages": st.lists(st.sampled_from(["gcc", "make", "g++"]), max_size=2),
    "env": st.dictionaries(st.sampled_from(["A", "B"]), scalars, max_size=2),
    "ports": st.lists(st.integers(0, 70000), max_size=2),
    "cmd": st.lists(st.sampled_from(["run", "--x", 'a"b']), min_size=1, max_size=2),
    "artifacts": st.lists(st.fixed_dictionaries({"path": st.just("files/tool.tar.gz")},
                                                optional={"dest": st.just("/opt")}), max_size=2),
    "cekit": st.dictionaries(st.sampled_from(["help", "name", "osbs"]), scalars, max_size=1),
})
good_images = st.fixed_dictionaries({
    "base": st.builds(lambda e: {"rootfs": {"tar": "base.tar"}, **e}, good_extras)},
    optional={"worker": st.builds(lambda e, f: {"from": f, **e}, good_extras,
                                  st.sampled_from(["base", "worker", "debian:12"])),
              "other": st.builds(lambda e, f: {"from": f, **e}, good_extras,
                                 st.sampled_from(["base", "worker"]))})
documents = st.one_of(
    st.fixed_dictionaries({"project": st.just("farm"), "images": good_images},
                          optional={"defaults": good_extras}),
    st.fixed_dictionaries(
        {"project": st.one_of(st.just("farm"), scalars),
         "images": st.one_of(st.dictionaries(names, image, min_size=1, max_size=3), anything)},
        optional={"defaults": st.one_of(image_extras, anything), "pods": anything}),
    anything)


@pytest.fixture(scope="module")
def project_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield build_file_tree(Path(folder), FILES)


def load(project_dir: Path, data: bytes) -> Any:
    spec_file = project_dir / "cpb.yaml"
    spec_file.write_bytes(data)
    try:
        spec = load_spec(spec_file)
    except SpecError as exc:
        assert str(exc) and "\n" not in str(exc)
        return exc
    assert isinstance(spec, ProjectSpec)
    expand_graph(spec, TASK_KINDS)  # a spec that loads must also make a graph
    return spec


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(documents)
def test_schema_shaped_documents(project_dir: Path, document: Any) -> None:
    load(project_dir, yaml.safe_dump(document, allow_unicode=True).encode())


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("ab:- \n\t[]{}&*!|>'\"#%@`,?~\\") + ["\x00"]),
               max_size=80))
def test_yaml_punctuation_soup(project_dir: Path, text: str) -> None:
    load(project_dir, text.encode())


@FUZZ
@given(st.binary(max_size=200))
def test_raw_bytes(project_dir: Path, data: bytes) -> None:
    load(project_dir, data)


def test_the_fuzzer_reaches_valid_specs(project_dir: Path) -> None:
    """Guard against a strategy that only ever produces errors."""
    valid = yaml.safe_dump({"project": "farm", "images": {
        "base": {"rootfs": {"tar": "base.tar"}},
        "worker": {"from": "base", "modules": ["worker"]}}})
    assert isinstance(load(project_dir, valid.encode()), ProjectSpec)
