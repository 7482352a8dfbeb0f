"""Names and constants every layer shares: labels, ports, the images' user and paths, and how
containers, networks and images are named.

The images (images/Dockerfile, entrypoint.sh, healthcheck.sh) and the compose files cannot
import this module, so tests/unit/test_names.py reads them and checks that they agree with it.
Cluster state is read back from LABEL_* labels, never parsed out of names.
"""

from __future__ import annotations

DEFAULT_CLUSTER = "sorctl"

# Labels on every container, network and volume of a cluster, and on every image.
LABEL_CLUSTER = "org.sorctl.cluster"
LABEL_ROLE = "org.sorctl.role"
LABEL_VERSION = "org.sorctl.version"
LABEL_INDEX = "org.sorctl.index"
# What `up` was asked for, minus the node count (`scale` changes that): "relay=1 subnets=2 ...".
LABEL_SHAPE = "org.sorctl.shape"
LABEL_INPUTS_HASH = "org.sorctl.inputs-hash"
# On every image the Dockerfile makes, stage caches and leftovers of a build included.
LABEL_BUILT_BY = "org.sorctl.built-by"
# Which engine a container of a cluster across hosts lives on (its endpoint as typed).
LABEL_HOST = "org.sorctl.host"
# Image labels that record a pinned package version: org.sorctl.<package>.
IMAGE_PACKAGE_LABEL = "org.sorctl.{}"

# Image roles, in build order (cheapest first).
ROLES = ("router", "scheduler", "relay", "client", "node")
CLUSTER_ROLES = ("scheduler", "node", "relay", "router")  # what `up` starts

# dispy's ports (dispy 4.15.2 defaults).
DISPY_PORT = 9700  # the scheduler's node-facing port (relays announce to it)
NODE_PORT = 9701  # dispynode, and dispynetrelay's TCP relay port
CLIENT_PORT = 9702  # dispyscheduler's port for SharedJobCluster clients
# Which port each role's healthcheck finds listening.
HEALTH_PORTS = {"node": NODE_PORT, "relay": NODE_PORT, "scheduler": CLIENT_PORT}

# The images' unprivileged runtime user and its paths.
RUN_USER = "sorctl"
RUN_UID = 990
HOME_DIR = "/home/sorctl"
VENV_DIR = "/opt/venv"
NUMBA_CACHE_DIR = "/opt/sorctl/numba-cache"
HOST_FILE = "/run/sorctl-host"  # the address the entrypoint bound (the healthcheck reads it)
# Material put into each container before it starts (readable by RUN_UID alone).
RUN_DIR = "/run/sorctl"
SECRET_PATH = f"{RUN_DIR}/secret"
CERT_PATH = f"{RUN_DIR}/cert.pem"
KEY_PATH = f"{RUN_DIR}/key.pem"
# A cluster across hosts: the scheduler's members, one address a line (the entrypoint reads it).
NODES_PATH = f"{RUN_DIR}/nodes"
# The scheduler's table of the nodes it counts, published by images/run-daemon.py (JSON).
SCHEDULER_VIEW_FILE = f"{HOME_DIR}/scheduler-nodes.json"
# Where a solve's client container keeps its job, system and result.
SOLVE_DIR = f"{HOME_DIR}/solve"


def container_name(cluster: str, role: str, index: int = 0) -> str:
    """`<cluster>-<role>`, or `<cluster>-<role>-<index>` for nodes and relays."""
    return f"{cluster}-{role}" if index == 0 else f"{cluster}-{role}-{index}"


def network_name(cluster: str, role: str, index: int = 0) -> str:
    """`<cluster>-net` (single layout), `<cluster>-lan`, `<cluster>-remote-<k>` (relay layout)."""
    return container_name(cluster, role, index)


# The Dockerfile's stages whose last image `sorctl images build` keeps, tagged, as the cache a
# later build reuses (their venvs): `sorctl-cache-<stage>:<version>`.
CACHE_STAGES = ("venv-dispy", "venv-numeric")


def cache_ref(stage: str, version: str) -> str:
    """`sorctl-cache-<stage>:<version>`."""
    if stage not in CACHE_STAGES:
        raise ValueError(f"unknown cached stage {stage!r} (stages: {', '.join(CACHE_STAGES)})")
    return f"sorctl-cache-{stage}:{version}"


def image_ref(role: str, version: str) -> str:
    """`sorctl-<role>:<version>`."""
    if role not in ROLES:
        raise ValueError(f"unknown image role {role!r} (roles: {', '.join(ROLES)})")
    return f"sorctl-{role}:{version}"
