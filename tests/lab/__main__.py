"""python -m tests.lab up|down|image [--name NAME]: the simulated lab for a developer's hands."""

from __future__ import annotations

import argparse

from tests import lab


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/lab.sh", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "image"])
    parser.add_argument("--name", default=lab.DEFAULT_NAME)
    args = parser.parse_args()
    if args.action == "image":
        import docker

        print(lab.ensure_image(docker.from_env()))
    elif args.action == "down":
        print("\n".join(lab.down(args.name)) or f"no lab named {args.name}")
    else:
        made = lab.up(args.name)
        print(f"lab {made.name}: subnets {made.subnets}")
        for h in made.hosts:
            print(f"  {h.name}  {h.tcp}  {h.ssh}  (subnet {h.subnet})")
        print(f"TLS client files: export DOCKER_CERT_PATH={made.dir}")
        print(f"ssh: HOME={made.ssh_home} (its .ssh/config and known_hosts reach the hosts)")


main()
