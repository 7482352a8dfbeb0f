"""Runs a dispy daemon script (dispyscheduler.py, dispynetrelay.py) as the container's PID 1.

PID 1 has no default action for SIGTERM, and these two scripts install no handler, so
`docker stop` would wait its full timeout and then SIGKILL. Here SIGTERM acts like Ctrl-C,
which both scripts treat as "shut down". (dispynode.py handles SIGTERM itself.)
    usage: python3 run-daemon.py SCRIPT [ARGS...]
"""

import runpy
import signal
import sys

signal.signal(signal.SIGTERM, signal.default_int_handler)
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except KeyboardInterrupt:
    sys.exit(0)
