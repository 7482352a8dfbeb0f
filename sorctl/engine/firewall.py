"""Runs sorctl.cluster.firewall's scripts on a host with the host's own iptables: a short-lived
container (host networking, NET_ADMIN) chroots into the host's root, so the rules are made by
the same iptables (legacy or nft) that the host's Docker engine uses."""

from __future__ import annotations

import docker

from sorctl.cluster import firewall
from sorctl.engine.images import image_ref
from sorctl.errors import ClusterError


def _run(client: docker.DockerClient, host: str, script: str) -> str:
    try:
        out = client.containers.run(
            image_ref("node"), entrypoint=["chroot", "/host", "/bin/sh", "-c", script],
            network_mode="host", cap_add=["NET_ADMIN", "NET_RAW", "SYS_CHROOT"],
            volumes={"/": {"bind": "/host", "mode": "rw"}}, user="root", remove=True,
            stderr=True,
        )  # fmt: skip
    except docker.errors.ContainerError as exc:
        err = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise ClusterError(
            f"host {host}: packet filter rules failed ({err[-1] if err else exc.exit_status}); "
            "the host needs iptables, or use --no-firewall"
        ) from None
    return out.decode(errors="replace")


def add(client: docker.DockerClient, host: str, cluster: str, members: list[str]) -> None:
    _run(client, host, firewall.add_script(cluster, members))


def remove(client: docker.DockerClient, host: str, cluster: str) -> None:
    _run(client, host, firewall.remove_script(cluster))


def rules(client: docker.DockerClient, host: str, cluster: str) -> list[str]:
    return [ln for ln in _run(client, host, firewall.list_script(cluster)).splitlines() if ln]
