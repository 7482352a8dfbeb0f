"""Numerics for symmetric positive definite systems: kernels, omega, files, the local driver and
the monitoring path both drivers share.

No Docker, dispy, typer or rich imports here (lint-imports checks it): node images and
notebooks import this package alone.
"""

import os
from pathlib import Path

# numba's compiled kernels go to the user's cache directory, not beside the package (which may
# be site-packages); the images set NUMBA_CACHE_DIR themselves.
os.environ.setdefault(
    "NUMBA_CACHE_DIR",
    str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sorctl" / "numba"),
)
