"""The pod commands of the CLI: `cpb up`, `cpb down`, `cpb status`, `cpb kube`.

Thin like the rest of the CLI: they call pods.py and kube.py and print.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from cpb.cli import complete
from cpb.cli.display import make_display, progress_option
from cpb.cli.options import Options, jobs_option
from cpb.errors import EXIT_FAILED, SpecError
from cpb.naming import POD, digest_tag, task_name
from cpb.spec.pods import check_pod_form
from cpb.util import did_you_mean

if TYPE_CHECKING:
    from cpb.project import Project


def _pod_names(project: Project, names: Sequence[str]) -> list[str]:
    if not project.spec.pods:
        raise SpecError(f"{project.spec.file.name} has no pods: add a 'pods:' section")
    for name in names:
        if name not in project.spec.pods:
            hint = did_you_mean(name, sorted(project.spec.pods))
            raise SpecError(f"no pod '{name}' in {project.spec.file.name}{hint}")
    return list(names) or list(project.spec.pods)


def _pod_form_names(project: Project, names: Sequence[str]) -> list[str]:
    """Like _pod_names, for running the pods under podman: each must fit one pod."""
    found = _pod_names(project, names)
    for name in found:
        check_pod_form(project.spec.pods[name])
    return found


def pod_targets(project: Project, names: Sequence[str]) -> list[str]:
    return [task_name(POD, n) for n in _pod_form_names(project, names)] if names else []


@click.command()
@click.argument("pods", nargs=-1, shell_complete=complete.pods)
@jobs_option()
@click.option("--no-registry-cache", is_flag=True,
              help="Build even what the registry already has (e.g. while it is down).")
@progress_option
@click.pass_obj
def up(opts: Options, pods: Sequence[str], jobs: int, no_registry_cache: bool,
       progress: str) -> None:
    """Build what the PODS need and start them (all pods if none given).

    A running pod whose spec and images did not change is left alone; one
    that changed is replaced.
    """
    from cpb.workflow import run_tasks

    def targets(project: Project) -> list[str]:
        return [task_name(POD, n) for n in _pod_form_names(project, pods)]

    def waiting(holder: str) -> None:
        click.echo(f"waiting for another cpb run in this project ({holder}) to finish...",
                   err=True)

    def display(project: Project, pending: int) -> object:
        return make_display(progress, project.state.log_path, pending)

    outcome = run_tasks(opts.opening(registry_cache=not no_registry_cache), targets,
                        jobs=jobs, on_wait=waiting,
                        on_ended=lambda text: click.echo(text, err=True), display=display,
                        command=shlex.join(["cpb", "up", *pods]))
    if not outcome.ran:
        click.echo(f"0 done, {outcome.tasks} up to date")  # the last line of a doit run
    if outcome.code != 0:
        sys.exit(EXIT_FAILED)
    project = outcome.project
    for name in _pod_form_names(project, pods):
        click.echo(f"pod {name}: running as {project.pods[name].k8s_name}")


@click.command()
@click.argument("pods", nargs=-1, shell_complete=complete.pods)
@click.option("--volumes", is_flag=True, help="Also remove the pods' named volumes.")
@click.pass_obj
def down(opts: Options, pods: Sequence[str], volumes: bool) -> None:
    """Stop and remove PODS (all pods of the spec if none given)."""
    from cpb.tasks.podops import pod_down

    project = opts.project()
    for name in _pod_names(project, pods):
        existed = pod_down(project, name, volumes=volumes)
        shown = project.pods[name].k8s_name
        click.echo(f"pod {name}: removed {shown}" if existed
                   else f"pod {name}: {shown} was not running")


@click.command()
@click.argument("pods", nargs=-1, shell_complete=complete.pods)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--logs", "log_lines", type=click.IntRange(0, 10_000), default=0,
              metavar="N", help="Also show the last N lines of each container's log.")
@click.pass_obj
def status(opts: Options, pods: Sequence[str], as_json: bool, log_lines: int) -> None:
    """Show the pods: state, containers (restarts, crash loops), images and digests.

    Exits with 1 when a pod is Degraded, or one of its containers crash-loops or
    ended with an error.
    """
    from cpb.tasks.podops import pod_status

    project = opts.project()
    result = pod_status(project, _pod_names(project, pods), log_lines=log_lines)
    if as_json:
        click.echo(json.dumps({"project": project.spec.project, "pods": result}, indent=2))
    else:
        for pod in result:
            _show_pod(pod)
    if not all(pod["healthy"] for pod in result):
        sys.exit(EXIT_FAILED)


def _show_pod(pod: dict[str, Any]) -> None:
    state = pod["state"]
    failing = [c["name"] for c in pod["containers"] if c["failed"]]
    if pod["state"] != "not running":
        if pod["up_to_date"]:
            state += ", up to date"
        elif not pod["current"]:
            state += f", out of date (`cpb up {pod['pod']}` replaces it)"
        elif failing:
            state += f", failing: {', '.join(failing)}"
        else:
            state += ", not stable yet"
    click.echo(f"{pod['pod']}: {pod['name']} {state}")
    for c in pod["containers"]:
        digest = digest_tag(c["digest"]) if c["digest"] else c["image_id"][:12]
        kind = f"  worker, kind {c['kind']}" if c.get("kind") else ""
        click.echo(f"  {c['name']:<20} {c['status']:<10} {c['image']}  ({digest}){kind}")
        for line in c.get("logs", []):
            click.echo(f"    | {line}")


@click.command()
@click.argument("pod", shell_complete=complete.pods)
@click.option("--cluster", is_flag=True,
              help="Deployments and Services for a cluster instead of one Pod.")
@click.option("--strict", is_flag=True,
              help="With --cluster: refuse (exit 2) when the spec has no registry: "
                   "the cluster could not pull the images.")
@click.option("--with-secrets", is_flag=True,
              help="With --cluster: emit the Secrets holding the NATS back-plane's "
                   "certificates and private keys too (default: referenced by name only).")
@click.pass_obj
def kube(opts: Options, pod: str, cluster: bool, strict: bool, with_secrets: bool) -> None:
    """Print POD's Kubernetes manifest (the one `cpb up` plays)."""
    from cpb.tasks.podops import cluster_yaml

    if with_secrets and not cluster:
        raise SpecError("--with-secrets goes with --cluster (a podman pod mounts its "
                        "TLS files from the key folder)")
    project = opts.project()
    if not cluster:
        name = _pod_form_names(project, [pod])[0]
        click.echo(project.pods[name].manifest, nl=False)
        return
    name = _pod_names(project, [pod])[0]
    if project.registry is None:
        problem = (f"no 'registry:' in {project.spec.file.name}: the cluster cannot pull "
                   f"these images (it would look for them on Docker Hub); add "
                   "`registry: {url: HOST[:PORT]/PATH}` that the cluster can reach and run "
                   "`cpb push`, or load the images into every node yourself")
        if strict:
            raise SpecError(problem)
        click.echo(f"cpb: warning: {problem}", err=True)
    if with_secrets and project.pods[name].tls is not None:
        click.echo("cpb: warning: this output holds private keys (Secrets); do not commit, "
                   "log or share it", err=True)
    click.echo(cluster_yaml(project, name, with_secrets=with_secrets), nl=False)
