"""Runs a dispy daemon script (dispynode.py, dispyscheduler.py, dispynetrelay.py) in this process.

    usage: python3 run-daemon.py [--secret-file FILE FLAG[,FLAG...]] SCRIPT [ARGS...]

The secret: dispy takes it only as an option (--secret, --node_secret, --cluster_secret), and an
option on a command line is visible to every user of the host in `ps` and /proc/PID/cmdline.
So the launcher reads it from FILE and appends `FLAG SECRET` for each FLAG to the script's
sys.argv in memory: the daemon parses it as usual, while the process's command line (fixed at
exec) and its environment never hold it.

SIGTERM: as PID 1 these scripts would get no default action for it, and dispyscheduler.py and
dispynetrelay.py install no handler, so `docker stop` would wait its full timeout and SIGKILL.
Here SIGTERM acts like Ctrl-C, which both treat as "shut down" (dispynode.py installs its own).
"""

import runpy
import signal
import sys


def main(argv: list[str]) -> None:
    extra: list[str] = []
    if argv[:1] == ["--secret-file"]:
        if len(argv) < 4:
            sys.exit("run-daemon: usage: --secret-file FILE FLAG[,FLAG...] SCRIPT [ARGS...]")
        path, flags, argv = argv[1], argv[2], argv[3:]
        try:
            with open(path, encoding="utf-8") as f:
                secret = f.read().strip()
        except OSError as exc:
            sys.exit(f"run-daemon: cannot read the secret file {path}: {exc.strerror}")
        if secret:
            for flag in flags.split(","):
                extra += [flag, secret]
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.argv = argv + extra
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except KeyboardInterrupt:
        sys.exit(0)


main(sys.argv[1:])
