"""`cpb clean [--images] [--down]`: forget .cpb/ and, if asked, the project's images.

It works with an invalid cpb.yaml too (that is often when a user wants a
fresh start): .cpb/ needs only the spec's folder, the images only the
`project:` name, read leniently when the rest of the spec does not load.

Images in use: podman refuses to remove an image a container uses. cpb
first looks at every container made from one of the project's images, and
either removes everything or nothing:
- the working containers an interrupted `podman build` leaves (buildah's,
  state `storage`) are cpb's own leftovers: removed;
- the project's pods are stopped and removed only with `--down` (they may be
  running a job); without it cpb names them and refuses;
- any other container (one a user started) is named with the command that
  removes it, and cpb refuses: it is not cpb's to remove.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cpb.errors import EnvironmentProblem, SpecError
from cpb.naming import PROJECT_LABEL
from cpb.state import StateDir, find_spec_file, remove_entry

if TYPE_CHECKING:
    from cpb.adapters.containers import ImageUser
    from cpb.adapters.podman import ImageStore
    from cpb.adapters.pods import RunningPod
    from cpb.adapters.runner import Runner
    from cpb.cli.options import Options

# The schema's rule for `project:` (cpb.schema.json), for reading it from a spec
# that does not validate as a whole.
_PROJECT_NAME = re.compile(r"[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?")
_POD_LABEL = "io.cpb.pod"  # cpb.resolve.kube.LABEL_POD; the CLI does not import resolve here


@click.command()
@click.option("--images", is_flag=True,
              help="Also remove this project's images from local storage.")
@click.option("--down", is_flag=True,
              help="With --images: first stop and remove this project's pods.")
@click.pass_obj
def clean(opts: Options, images: bool, down: bool) -> None:
    """Remove .cpb/ (rendered descriptors, logs, records).

    With --images, nothing is removed if a pod or container still uses one of
    the images (the message names it, and the command that frees it).
    """
    from cpb.cli.options import make_runner

    if down and not images:
        raise click.UsageError("--down goes with --images (`cpb clean --images --down`)")
    spec_file = opts.spec_file or find_spec_file(Path.cwd())
    state = StateDir(spec_file.resolve().parent)
    # A project can ship .cpb/ with links in it: remove links, never follow them.
    if state.root.is_symlink():
        state.root.unlink()
        click.echo(f"removed {state.root}, a symbolic link (not what it pointed to)")
    if (state.root / "lock").is_symlink():
        (state.root / "lock").unlink()
    say: Callable[[str], None] = lambda text: click.echo(text, err=True)  # noqa: E731
    with state.lock(wait=False, on_ended=say, check=False):
        if images:
            _remove_images(opts, spec_file, make_runner(), down=down)
        for child in sorted(state.root.iterdir()):
            if child.name == "lock":
                continue  # we hold it: removing it would let a second run in
            remove_entry(child)
    click.echo(f"removed the contents of {state.root}")


def _remove_images(opts: Options, spec_file: Path, runner: Runner, *, down: bool) -> None:
    from cpb.adapters.containers import descendants_of, image_users, remove_containers
    from cpb.adapters.podman import ImageStore
    from cpb.adapters.pods import PodStore
    from cpb.adapters.runner import CommandFailed
    from cpb.resolve.podtls import remove_pod_files
    from cpb.security.pki import Pki, default_folder

    project, stop_timeouts = _project_name(opts, spec_file)
    store = ImageStore(runner)
    prefix = f"localhost/{project}/"
    refs = sorted(r for r in store.snapshot().ids if r.startswith(prefix))
    ids = {store.snapshot().ids[r] for r in refs}
    # an interrupted build leaves working containers of its intermediate images too
    users = image_users(runner, descendants_of(runner, ids) if ids else set())
    pods = PodStore(runner, PROJECT_LABEL, project).pods()
    ours = {pod.id: pod for pod in pods.values()}
    leftovers = [u for u in users if u.build_leftover]
    users = [u for u in users if u.build_leftover or u.image_id in ids]
    # with --down every pod of the project goes, also one using an image built before
    in_pods = sorted(ours if down else {u.pod_id for u in users if u.pod_id in ours},
                     key=lambda pod_id: ours[pod_id].name)
    others = [u for u in users if not u.build_leftover and u.pod_id not in ours]
    if others or (in_pods and not down):
        raise EnvironmentProblem(_in_use_message(store, users, ours, down=down))
    if leftovers:
        remove_containers(runner, [u.id for u in leftovers])
        click.echo(f"removed {len(leftovers)} leftover build container(s) "
                   f"({', '.join(u.name for u in leftovers)})")
    pod_store = PodStore(runner, PROJECT_LABEL, project)
    for pod_id in in_pods:
        pod = ours[pod_id]
        short = pod.labels.get(_POD_LABEL, pod.name)
        try:
            pod_store.remove(pod.name, stop_timeouts.get(short, _default_stop_timeout()))
        except CommandFailed as exc:
            raise EnvironmentProblem(f"removing pod {pod.name} failed: {exc.tail(3)}; "
                                     "nothing else was removed") from None
        # the pod's copies of its TLS files go with it, as with `cpb down`
        remove_pod_files(Pki(default_folder(spec_file.parent)), pod.name)
        click.echo(f"pod {short}: removed {pod.name}")
    try:
        store.remove(refs)
    except CommandFailed as exc:
        # another process started using an image meanwhile; .cpb/ stays as it is
        # (its records are checked against local storage by the next run)
        raise EnvironmentProblem(f"`podman rmi` failed: {exc.tail(3) or exc}; "
                                 f"{spec_file.parent / '.cpb'} was left as it is") from None
    click.echo(f"removed {len(refs)} image tag(s)")


def _in_use_message(store: ImageStore, users: list[ImageUser], ours: dict[str, RunningPod],
                    *, down: bool) -> str:
    """One line: each image in use, what uses it, and the command that frees it."""
    names: dict[str, str] = {}
    for ref, image_id in sorted(store.snapshot().ids.items()):
        shown = ref.removeprefix("localhost/")
        # the version tag rather than the content-addressed cpb-<digest12> one
        if image_id not in names or (":cpb-" in names[image_id] and ":cpb-" not in shown):
            names[image_id] = shown
    parts: list[str] = []
    pods_named: list[str] = []
    for user in users:
        if user.build_leftover:
            continue
        image = names.get(user.image_id, user.image)
        if user.pod_id in ours:
            pod = ours[user.pod_id]
            short = pod.labels.get(_POD_LABEL, pod.name)
            if short not in pods_named:
                pods_named.append(short)
                parts.append(f"{image} is used by pod {short} ({pod.name})")
        elif user.pod_name:
            parts.append(f"{image} is used by container {user.name} of pod {user.pod_name}: "
                         f"remove it with `podman pod rm --force {user.pod_name}`")
        else:
            parts.append(f"{image} is used by container {user.name}: "
                         f"remove it with `podman rm --force {user.name}`")
    if pods_named and not down:
        parts.append(f"stop the project's pods first (`cpb down {' '.join(pods_named)}`), "
                     "or run `cpb clean --images --down`")
    return "nothing was removed: " + "; ".join(parts)


def _project_name(opts: Options, spec_file: Path) -> tuple[str, dict[str, int]]:
    """The project's name and its pods' stop timeouts; the name alone when only
    `project:` can be read."""
    from cpb.spec.model import load_spec
    from cpb.spec.yamlload import load_yaml

    try:
        spec = load_spec(spec_file, host_paths=opts.host_paths)
    except SpecError as exc:
        problem = str(exc)
    else:
        return spec.project, {name: pod.stop_timeout for name, pod in spec.pods.items()}
    try:
        data = load_yaml(spec_file, spec_file.name)
    except SpecError:
        data = None
    name = data.get("project") if isinstance(data, dict) else None
    if isinstance(name, str) and _PROJECT_NAME.fullmatch(name):
        return name, {}
    raise SpecError(f"cannot tell which images are this project's, its 'project' name is "
                    f"unreadable: {problem}; nothing was removed")


def _default_stop_timeout() -> int:
    from cpb.spec.pods import DEFAULT_STOP_TIMEOUT

    return DEFAULT_STOP_TIMEOUT
