"""Rendering cekit image descriptors from templates/image.yaml.j2.

`render_image` returns the descriptor text with placeholders in place of
host paths and of the digest label; `fill_placeholders` turns it into the
file cekit reads. The digest is taken between the two, so moving the project
(or cpb's site-packages) does not change any image's identity.

cekit processes an image's own packages and artifacts after all of its
modules, so a module could not use the image's artifacts, and every module
change would install the packages again. cpb therefore puts them in modules
of their own (`module_args`, templates/image-module.yaml.j2), written
beside the descriptor and installed before the image's modules: packages,
then artifacts, then the modules in order, each its own layer, so podman's
cache keeps the package and artifact layers when a module changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpb.naming import DIGEST_LABEL, IMAGE_LABEL, PROJECT_LABEL
from cpb.resources import templates_dir
from cpb.spec.model import ImageSpec
from cpb.util import deep_merge

if TYPE_CHECKING:
    import jinja2

    from cpb.resolve.rendermemo import Rendered, RenderMemo

TEMPLATE = "image.yaml.j2"
MODULE_TEMPLATE = "image-module.yaml.j2"
DIGEST_PLACEHOLDER = "@cpb:digest@"
# The generated modules: folder below the image's render folder, and cekit names.
# The names start with "_", which no module of a project can (schema.MODULE_PATTERN).
GENERATED_DIR = "modules"
GENERATED_LABEL = "generated"  # its path placeholder
PACKAGES_MODULE = ("packages", "_cpb-packages")
ARTIFACTS_MODULE = ("artifacts", "_cpb-artifacts")


_JSON = json.JSONEncoder(ensure_ascii=False)  # one encoder: json.dumps makes one per call


def _quote(value: Any) -> str:
    return _JSON.encode(value)


@cache
def environment(folder: Path | None = None) -> jinja2.Environment:
    import jinja2  # only when something is rendered: see cpb.resolve.rendermemo

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder or templates_dir())),
        # Not HTML: every value is quoted by the `q` filter instead.
        undefined=jinja2.StrictUndefined, autoescape=False,  # noqa: S701
        keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False)
    env.filters["q"] = _quote
    return env


def template_source() -> str:
    """Both templates: a change to either changes what cekit is given."""
    return "".join((templates_dir() / name).read_text() for name in (TEMPLATE, MODULE_TEMPLATE))


def path_placeholder(label: str) -> str:
    return f"@cpb:path:{label}@"


def _generated(image: ImageSpec) -> list[tuple[str, str]]:
    """(folder, cekit name) of the modules cpb generates for `image`, in install order."""
    return ([PACKAGES_MODULE] if image.packages else []) + (
        [ARTIFACTS_MODULE] if image.artifacts else [])


def descriptor_args(image: ImageSpec, *, project: str, repository: str, from_ref: str,
                    spec_file: str) -> dict[str, Any]:
    """What templates/image.yaml.j2 is given for `image`."""
    labels = dict(image.labels)
    labels.update({PROJECT_LABEL: project, IMAGE_LABEL: image.name,
                   DIGEST_LABEL: DIGEST_PLACEHOLDER})
    return dict(
        spec_file=spec_file, image=image.name, repository=repository,
        version=image.version, from_ref=from_ref, description=image.description,
        labels=sorted(labels.items()), env=image.env, ports=image.ports,
        packages=image.packages, packages_manager=image.packages_manager,
        generated=[name for _, name in _generated(image)],
        generated_path=path_placeholder(GENERATED_LABEL),
        repositories=[{"name": m.name, "path": path_placeholder(m.label)}
                      for m in image.modules],
        modules=[{"name": m.name} for m in image.modules],
        user=image.user, workdir=image.workdir, cmd=list(image.cmd),
        entrypoint=list(image.entrypoint))


def module_args(image: ImageSpec, *, spec_file: str,
                artifact_sums: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """{path below the image's render folder: what templates/image-module.yaml.j2 is given}."""
    args: dict[str, dict[str, Any]] = {}
    for folder, name in _generated(image):
        artifacts = [{"name": a.name, "path": path_placeholder(f"artifact:{a.name}"),
                      "checksum": _checksum(artifact_sums[a.name]),
                      "target": a.target, "dest": a.dest}
                     for a in image.artifacts] if folder == "artifacts" else []
        args[f"{GENERATED_DIR}/{folder}/module.yaml"] = dict(
            spec_file=spec_file, image=image.name, what=folder, name=name,
            packages=image.packages if folder == "packages" else (), artifacts=artifacts)
    return args


def render_image(image: ImageSpec, memo: RenderMemo, *, templates: str, project: str,
                 repository: str, from_ref: str, spec_file: str,
                 artifact_sums: Mapping[str, str]) -> Rendered:
    """The descriptor of `image` and its generated modules, with placeholders
    (see `fill_placeholders`): from `memo` when it has them for the same
    values and templates (`templates`: their hash), else rendered."""
    described = descriptor_args(image, project=project, repository=repository,
                                from_ref=from_ref, spec_file=spec_file)
    generated = module_args(image, spec_file=spec_file, artifact_sums=artifact_sums)
    key = memo.key(templates, described, generated)
    hit = memo.get(key)
    if hit is not None:
        return hit
    module_template = environment().get_template(MODULE_TEMPLATE)
    rendered = (environment().get_template(TEMPLATE).render(described),
                {rel: module_template.render(args) for rel, args in generated.items()})
    memo.put(key, rendered)
    return rendered


def _checksum(artifact_sum: str) -> tuple[str, str]:
    """(algorithm, hex) from a sha256 or an `<algorithm>-<hex>` cache key."""
    algorithm, _, value = artifact_sum.rpartition("-")
    return (algorithm or "sha256", value)


def fill_placeholders(text: str, digest: str, paths: Mapping[str, str | Path],
                      cekit_overrides: Mapping[str, Any]) -> str:
    """The descriptor cekit reads: real paths, the digest, the escape hatch merged."""
    text = fill_paths(text.replace(_quote(DIGEST_PLACEHOLDER), _quote(digest)), paths)
    if not cekit_overrides:
        return text
    import yaml  # only for a spec's `cekit:` overrides

    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    base = yaml.safe_load(text)
    merged = deep_merge(base, cekit_overrides)
    for key in _BY_NAME:
        if isinstance(cekit_overrides.get(key), list):
            merged[key] = _merge_by_name(base.get(key) or [], cekit_overrides[key])
    # JSON is YAML: dumping as JSON keeps the quoting rules in one place.
    return header + json.dumps(merged, indent=2, ensure_ascii=False) + "\n"


# cekit's lists of {name, value} entries: the escape hatch's entries add to the
# rendered ones (one of the same name replaces it) instead of replacing the
# whole list, so that `cekit: {labels: [...]}` keeps cpb's own labels.
_BY_NAME = ("envs", "labels")
_OWN_LABELS = frozenset({PROJECT_LABEL, IMAGE_LABEL, DIGEST_LABEL})  # never replaced


def _merge_by_name(base: list[dict[str, Any]], over: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {entry.get("name") for entry in over}
    kept = [entry for entry in base
            if entry.get("name") not in names or entry.get("name") in _OWN_LABELS]
    ours = {entry.get("name") for entry in kept}
    return kept + [entry for entry in over if entry.get("name") not in ours]


def fill_paths(text: str, paths: Mapping[str, str | Path]) -> str:
    for label, path in paths.items():
        text = text.replace(_quote(path_placeholder(label)), _quote(str(path)))
    return text
