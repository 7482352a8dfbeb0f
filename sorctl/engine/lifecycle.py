"""up / scale / down: plan, compare with what the engine has, apply, undo on failure."""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib.metadata import version as dist_version

import docker.errors

from sorctl.cluster import material
from sorctl.cluster.plan import Plan, PlanError, Shape, make_plan
from sorctl.engine import apply, observe
from sorctl.engine.apply import Created, Reporter
from sorctl.errors import ClusterError, InputError
from sorctl.names import CLUSTER_ROLES

READY_TIMEOUT_S = 60.0  # `up` and `scale`: until the scheduler counts every node
SUBNET_RETRIES = 3  # another `up` may take the same free subnet between plan and create


@dataclass
class UpResult:
    name: str
    created: bool  # False: the cluster was already up with this shape
    seconds: float


def _images(client) -> dict[str, str]:
    from sorctl.engine import images

    images.require_images(client, list(CLUSTER_ROLES))
    return {role: images.image_ref(role) for role in CLUSTER_ROLES}


def plan_for(
    client,
    name: str,
    shape: Shape,
    *,
    relay_daemons: bool = True,
    existing: dict[str, str] | None = None,
) -> Plan:
    try:
        return make_plan(
            name,
            shape,
            _images(client),
            used_subnets=observe.used_subnets(client),
            existing_subnets=existing,
            version=dist_version("sorctl"),
            relay_daemons=relay_daemons,
        )
    except PlanError as exc:
        raise InputError(str(exc)) from exc


def up(
    client,
    name: str,
    shape: Shape,
    *,
    timeout: float = READY_TIMEOUT_S,
    keep_on_failure: bool = False,
    reporter: Reporter | None = None,
    relay_daemons: bool = True,
) -> UpResult:
    """Bring cluster `name` up with `shape` and wait until the scheduler counts every node.

    Same shape already up: nothing to do. Another shape: an error. On failure or Ctrl-C,
    everything this call created is removed (unless keep_on_failure).
    """
    reporter = reporter or Reporter()
    t0 = time.monotonic()
    existing = observe.find_cluster(client, name)
    if existing is not None:
        if existing.shape == shape:
            return UpResult(name, False, time.monotonic() - t0)
        have = existing.shape.describe() if existing.shape else "an incomplete cluster"
        raise ClusterError(
            f"cluster {name!r} already exists as {have}; asked for {shape.describe()}. "
            f"Use `sorctl scale --name {name} --nodes N`, or `sorctl down --name {name}` first"
        )
    for attempt in range(SUBNET_RETRIES):
        plan = plan_for(client, name, shape, relay_daemons=relay_daemons)
        created = Created()
        mat = material.create(name, shape.tls)
        try:
            apply.bring_up(client, plan, mat, timeout=timeout, reporter=reporter, created=created)
            return UpResult(name, True, time.monotonic() - t0)
        except docker.errors.APIError as exc:
            overlap = "overlaps" in str(exc) and attempt + 1 < SUBNET_RETRIES
            if overlap or not keep_on_failure:
                apply.undo(client, created)
                material.remove(name)
            if not overlap:
                raise ClusterError(
                    f"cluster {name!r}: the engine refused: {exc.explanation or exc}"
                ) from exc
        except BaseException:
            if not keep_on_failure:
                apply.undo(client, created)
                material.remove(name)
            raise
    raise AssertionError("unreachable")


def scale(
    client,
    name: str,
    nodes: int,
    *,
    timeout: float = READY_TIMEOUT_S,
    reporter: Reporter | None = None,
) -> tuple[int, int]:
    """Grow or shrink cluster `name` to `nodes` nodes. Returns (before, after)."""
    reporter = reporter or Reporter()
    info = observe.find_cluster(client, name)
    if info is None or info.shape is None:
        raise ClusterError(f"no cluster {name!r} to scale (see `sorctl status`)")
    before = len(info.nodes)
    shape = Shape(
        nodes, info.shape.relay, info.shape.subnets, info.shape.cpus_per_node, info.shape.tls
    )
    subnets = {n.name: n.subnet for n in info.networks}
    plan = plan_for(client, name, shape, existing=subnets, relay_daemons=bool(info.role("relay")))
    # by the index label of each node (names are derived from it, not read back)
    wanted = {c.index: c.name for c in plan.role("node")}
    have = {c.index: c.name for c in info.nodes}
    extra = sorted(have[i] for i in have.keys() - wanted.keys())
    missing = sorted(wanted[i] for i in wanted.keys() - have.keys())
    if extra:
        reporter.step(f"removing {len(extra)} node(s)")
        apply.remove_containers(client, extra)
    if missing:
        created = Created()
        try:
            apply.add_nodes(
                client,
                plan,
                missing,
                material.load(name),
                timeout=timeout,
                reporter=reporter,
                created=created,
            )
        except BaseException:
            apply.undo(client, created)
            raise
    return before, nodes


def down(client, name: str) -> dict[str, int]:
    counts = apply.remove_cluster(client, name)
    counts["secret_dirs"] = int(material.remove(name))
    return counts
