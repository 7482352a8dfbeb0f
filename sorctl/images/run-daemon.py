"""Runs a dispy daemon script (dispynode.py, dispyscheduler.py, dispynetrelay.py) as PID 1.

PID 1 has no default action for SIGTERM, and these two scripts install no handler, so
`docker stop` would wait its full timeout and then SIGKILL. Here SIGTERM acts like Ctrl-C,
which both scripts treat as "shut down". (dispynode.py handles SIGTERM itself.)

For dispyscheduler.py it also publishes the scheduler's own table of nodes (the nodes it counts,
with their CPUs) to VIEW_FILE once a second, replaced atomically: sorctl's readiness wait and
`sorctl status` read it with the Docker API. The debug log said the same, but it rotates away,
and dispy's --httpd monitor lists only the nodes of a client's computation.
    usage: python3 run-daemon.py [--secret-file FILE FLAG[,FLAG...]] SCRIPT [ARGS...]

The secret: dispy takes it only as an option (--secret, --node_secret, --cluster_secret), and an
option on a command line is visible to every user of the host in `ps` and /proc/PID/cmdline.
So the launcher reads it from FILE and appends `FLAG SECRET` for each FLAG to the script's
sys.argv in memory: the daemon parses it as usual, while the process's command line (fixed at
exec) and its environment never hold it. (dispynode.py runs through this launcher too.)

For dispynode.py it first loads the solver's node code, which every worker job then inherits,
and gives back the library pages the loading read.
"""

import json
import os
import runpy
import signal
import sys
import threading
import time

VIEW_FILE = "/home/sorctl/scheduler-nodes.json"  # sorctl.names.SCHEDULER_VIEW_FILE
VIEW_EVERY_S = 1.0
# A cluster across hosts: its members, one address a line (sorctl.names.NODES_PATH).
MEMBERS_FILE = "/run/sorctl/nodes"


def _scheduler():
    """dispyscheduler's _Scheduler, once it exists (pycos.Singleton keeps the instance)."""
    pycos = sys.modules.get("pycos")
    memo = getattr(getattr(pycos, "Singleton", None), "_memo", {})
    return next((obj for cls, obj in list(memo.items()) if cls.__name__ == "_Scheduler"), None)


def _drop(sched, addrs, task=None):
    """A pycos task (it runs in the scheduler's own thread): forget these nodes."""
    for addr in addrs:
        node = sched._nodes.get(addr)
        if node is not None:
            sched.delete_node(node)
            sys.stderr.write(f"run-daemon: node {addr} is no longer a member: dropped\n")
    yield task.sleep(0)


class _Members:
    """Nodes taken out of MEMBERS_FILE (`sorctl scale --remove-host`) are dropped from the
    scheduler's table. dispyscheduler 4.15.2 never drops a node that stops while idle: it checks
    the node's goodbye (TERMINATED) against `self.secret`, an attribute it does not have, and
    from another subnet the goodbye (a broadcast) does not even arrive. The file counts only
    when it reads the same twice in a row (a second apart): never half written."""

    def __init__(self) -> None:
        self.last: str | None = None
        self.stable: set[str] | None = None

    def removed(self) -> set[str]:
        try:
            with open(MEMBERS_FILE, encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            text = None
        same, self.last = text == self.last, text
        if not same or not text or not text.endswith("\n"):
            return set()
        members = set(text.split())
        gone = set() if self.stable is None else self.stable - members
        self.stable = members
        return gone


def _publish_nodes() -> None:
    # address -> ((port, auth), first time seen): a restarted node signs anew
    seen: dict[str, tuple] = {}
    members = _Members()
    while True:
        time.sleep(VIEW_EVERY_S)
        sched = _scheduler()
        if sched is None:
            continue
        gone = members.removed()
        if gone:
            import pycos

            pycos.Task(_drop, sched, sorted(gone))
        try:
            nodes = dict(sched._nodes)  # a copy: the scheduler's own thread changes it
        except RuntimeError:  # changed during the copy; next time
            continue
        table = {}
        for addr, node in nodes.items():
            key = (node.port, node.auth)
            if seen.get(addr, (None,))[0] != key:
                seen[addr] = (key, time.time())
            table[addr] = {"name": node.name, "cpus": node.cpus, "avail_cpus": node.avail_cpus,
                           "busy": node.busy, "since": seen[addr][1]}  # fmt: skip
        doc = {"pid": os.getpid(), "t": time.time(), "nodes": table}
        tmp = f"{VIEW_FILE}.tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump(doc, fh)
            os.replace(tmp, VIEW_FILE)
        except OSError as exc:
            sys.stderr.write(f"run-daemon: cannot write {VIEW_FILE}: {exc}\n")


def _with_secret(argv: list[str]) -> list[str]:
    """argv without the launcher's --secret-file FILE FLAGS, with `FLAG SECRET` appended."""
    if argv[:1] != ["--secret-file"]:
        return argv
    if len(argv) < 4:
        sys.exit("run-daemon: usage: --secret-file FILE FLAG[,FLAG...] SCRIPT [ARGS...]")
    path, flags, argv = argv[1], argv[2], argv[3:]
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().strip()
    except OSError as exc:
        sys.exit(f"run-daemon: cannot read the secret file {path}: {exc.strerror}")
    extra: list[str] = []
    if secret:
        for flag in flags.split(","):
            extra += [flag, secret]
    return argv + extra


def _preload_worker() -> None:
    """Every worker job is a fork of dispynode (through its setup process): the node code and its
    compiled kernels loaded here once are there at once in every solve's workers, instead of
    each worker importing numpy, scipy and numba and loading the kernels (~0.6 s) before it
    connects back. No kernel runs threads, so the fork is safe. The library pages the loading
    read go back to the kernel after (sorctl.distributed.file_pages): the node's memory holds
    the blocks, not a copy of LLVM."""
    try:
        from sorctl.distributed import node
        from sorctl.distributed.file_pages import release_after_loading

        node.warm()
        release_after_loading()
    except Exception as exc:  # noqa: BLE001 -- the workers then load it themselves
        sys.stderr.write(f"run-daemon: node code not preloaded ({exc}): each worker loads it\n")


def main() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.argv = _with_secret(sys.argv[1:])
    if os.path.basename(sys.argv[0]) == "dispyscheduler.py":
        threading.Thread(target=_publish_nodes, name="sorctl-nodes", daemon=True).start()
    if os.path.basename(sys.argv[0]) == "dispynode.py":
        _preload_worker()
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
