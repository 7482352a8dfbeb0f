"""Images to 3 Docker hosts through a container registry against save/load over each host's
connection, in the simulated lab (tests/lab) with Debian's docker-registry in it
(tests/lab/registry.py): prints times and their ratio (not a test).

Each round starts with no sorctl image on any host, then `up --host` x3 (2 subnets) with the
images sent by save/load, `down`; the same with `--registry` (every host pulls), `down`. The
push to the registry is timed once before the rounds (what a new version costs once). The
figures are the `up` wall times and the image part of them (the longest host's, as printed by
`up`). The lab's engines and the registry share this machine's disk and cores, so the ratio
is what it is here; over a real network the save/load path is bound by the link of the
machine that sends, the registry's by the registry's.

Needs a Docker engine, the images (`sorctl images build`) and root (the lab's host image is
made with debootstrap the first time). Brings up its own lab `regbench-<random>` and removes it.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import lab as simlab  # noqa: E402
from tests.lab import registry as labreg  # noqa: E402

SORCTL = [sys.executable, "-m", "sorctl.cli.main"]
# "images sent to H: ... (N MB, S s)" / "images pulled by H: ... (N MB, S s)"
SHIPPED = re.compile(r"^images (?:sent to|pulled by) (\S+): .* \((\d+) MB, ([\d.]+) s\)$", re.M)


def run(*args: str, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.monotonic()
    r = subprocess.run([*SORCTL, *args], capture_output=True, text=True,
                       env={**os.environ, **env}, timeout=1800)  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"sorctl {' '.join(args)} failed: {r.stderr.strip()[-400:]}")
    return time.monotonic() - t0, r.stderr


def shipped(stderr: str, verb: str, hosts: int) -> tuple[float, int]:
    """(the longest host's image seconds, MB over all hosts); every host must have got them."""
    found = [m for m in SHIPPED.finditer(stderr) if verb in m.group(0)]
    if len(found) != hosts:
        raise SystemExit(f"expected {hosts} hosts' lines '{verb}', got:\n{stderr}")
    return max(float(m.group(3)) for m in found), sum(int(m.group(2)) for m in found)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1, help="Rounds of each (medians printed).")
    args = p.parse_args()
    name = f"regbench-{secrets.token_hex(2)}"
    home = Path(tempfile.mkdtemp(prefix="sorctl-bench-"))
    lab = simlab.up(name, directory=home / "lab")
    try:
        reg = labreg.start(lab)
        pull_from = reg.addresses[lab.hosts[0].subnet]
        labreg.trust_plain_http(lab, lab.hosts, pull_from)
        env = {"HOME": str(lab.ssh_home), "DOCKER_CERT_PATH": str(lab.dir),
               "SORCTL_HOME": str(home / "sorctl")}  # fmt: skip
        hosts = []
        for h in lab.hosts:
            hosts += ["--host", h.tcp if h.subnet == lab.hosts[0].subnet else h.ssh]
        push_s, _ = run("images", "push", "--registry", reg.loopback, env=env)
        times: dict[str, list[tuple[float, float, int]]] = {"save/load": [], "registry": []}
        for _ in range(args.rounds):
            ways = (("save/load", [], "sent to"),
                    ("registry", ["--registry", pull_from], "pulled by"))  # fmt: skip
            for how, extra, verb in ways:
                for h in lab.hosts:
                    labreg.forget_images(lab, h)
                up_s, stderr = run("up", "--name", "rb", *hosts, *extra, env=env)
                images_s, mb = shipped(stderr, verb, len(lab.hosts))
                run("down", "--name", "rb", env=env)
                times[how].append((up_s, images_s, mb))
    finally:
        simlab.down(name)
        shutil.rmtree(home, ignore_errors=True)

    def med(how: str, k: int) -> float:
        return statistics.median(t[k] for t in times[how])

    rows = [
        ("images push --registry (once per version)", f"{push_s:.1f} s"),
        ("up, 3 hosts / 2 subnets, save/load", f"{med('save/load', 0):.1f} s"),
        ("  of which images (longest host)", f"{med('save/load', 1):.1f} s"),
        ("  MB moved (all hosts)", f"{med('save/load', 2):.0f}"),
        ("up, 3 hosts / 2 subnets, --registry", f"{med('registry', 0):.1f} s"),
        ("  of which images (longest host)", f"{med('registry', 1):.1f} s"),
        ("  MB moved (all hosts)", f"{med('registry', 2):.0f}"),
        ("ratio up registry / save/load", f"{med('registry', 0) / med('save/load', 0):.2f}x"),
        ("ratio images registry / save/load", f"{med('registry', 1) / med('save/load', 1):.2f}x"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"rounds: {args.rounds} (medians)")
    for what, got in rows:
        print(f"{what:<{width}}  {got:>10}")


if __name__ == "__main__":
    main()
