"""The pod commands of the CLI: `cpb up`, `cpb down`, `cpb status`, `cpb kube`.

Thin like the rest of the CLI: they call pods.py and kube.py and print.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from typing import Any

import click

from cpb.cli import complete
from cpb.cli.display import make_display, progress_option
from cpb.cli.session import project_lock
from cpb.errors import EXIT_FAILED, SpecError
from cpb.naming import POD, digest_tag, task_name
from cpb.project import Project
from cpb.spec.pods import check_pod_form
from cpb.tasks.podops import cluster_yaml, pod_down, pod_status
from cpb.tasks.records import record_found
from cpb.util import did_you_mean


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
@click.option("-j", "--jobs", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Tasks to run at once.")
@click.option("--no-registry-cache", is_flag=True,
              help="Build even what the registry already has (e.g. while it is down).")
@progress_option
@click.pass_obj
def up(opts: Any, pods: Sequence[str], jobs: int, no_registry_cache: bool,
       progress: str) -> None:
    """Build what the PODS need and start them (all pods if none given).

    A running pod whose spec and images did not change is left alone; one
    that changed is replaced.
    """
    project: Project = opts.project(registry_cache=not no_registry_cache)
    names = _pod_form_names(project, pods)
    from cpb.tasks.doitapp import run_doit  # doit is imported only to run tasks
    from cpb.tasks.plan import make_plan

    targets = [task_name(POD, n) for n in names]
    with project_lock(project):
        record_found(project)
        pending = sum(p.pending for p in make_plan(project, targets))
        display = make_display(progress, project.state.log_path, pending)
        code = run_doit(project, targets, jobs=jobs, display=display,
                        command=shlex.join(["cpb", "up", *pods]))
    if code != 0:
        sys.exit(EXIT_FAILED)
    for name in names:
        click.echo(f"pod {name}: running as {project.pods[name].k8s_name}")


@click.command()
@click.argument("pods", nargs=-1, shell_complete=complete.pods)
@click.option("--volumes", is_flag=True, help="Also remove the pods' named volumes.")
@click.pass_obj
def down(opts: Any, pods: Sequence[str], volumes: bool) -> None:
    """Stop and remove PODS (all pods of the spec if none given)."""
    project: Project = opts.project()
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
def status(opts: Any, pods: Sequence[str], as_json: bool, log_lines: int) -> None:
    """Show the pods: state, containers (restarts, crash loops), images and digests.

    Exits with 1 when a pod is Degraded, or one of its containers crash-loops or
    ended with an error.
    """
    project: Project = opts.project()
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
@click.pass_obj
def kube(opts: Any, pod: str, cluster: bool, strict: bool) -> None:
    """Print POD's Kubernetes manifest (the one `cpb up` plays)."""
    project: Project = opts.project()
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
    click.echo(cluster_yaml(project, name), nl=False)
