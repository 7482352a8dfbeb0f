"""cg-ssor iterations to rtol 1e-6 against omega: the evidence for sorctl.solver.omega.ssor_omega.

    .venv/bin/python bench/bench_cg_ssor_omega.py           # 2-D 512^2, 1024^2, 3-D 64^3 (~2 min)
    .venv/bin/python bench/bench_cg_ssor_omega.py --quick   # small sizes, a smoke run

Each row: iterations at fixed omegas, then at Axelsson's bound-optimal w*(mu) = 2 / (1 + sqrt(2 mu))
with mu the exact lambda_min(D^-1/2 A D^-1/2) (Poisson: 1 - cos(pi / (m + 1))), at w*(4 mu) (the
rule, sorctl.solver.omega.ssor_omega), at w*(16 mu), at the rule with mu as cg-ssor estimates it
(a short
Lanczos run), and at Young's SOR omega for comparison.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sorctl import solve  # noqa: E402
from sorctl.solver import gallery  # noqa: E402
from sorctl.solver.omega import choose_ssor_omega, ssor_omega, young_omega  # noqa: E402


def axelsson(mu: float) -> float:
    """The omega minimising Axelsson's SSOR condition bound with delta = 0."""
    return 2.0 / (1.0 + np.sqrt(2.0 * mu))


FIXED = (1.0, 1.5, 1.8, 1.9, 1.95, 1.98, 1.99, 1.995)
RTOL = 1e-6


def its(A, b, omega: float) -> int:
    r = solve(A, b, omega=omega, rtol=RTOL, maxiter=5000, method="cg-ssor")
    return r.iterations if r.converged else -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = ap.parse_args()
    sizes = [("2-D", 128), ("2-D", 256), ("3-D", 32)] if args.quick else [
        ("2-D", 512), ("2-D", 1024), ("3-D", 64)]  # fmt: skip
    print(f"cg-ssor iterations to rtol {RTOL:g} (b = 1, x0 = 0)")
    head = " ".join(f"{w:>6g}" for w in FIXED)
    print(f"{'system':14} {head} | {'w*(mu)':>14} {'rule w*(4mu)':>14} {'w*(16mu)':>14} "
          f"{'rule(est mu)':>14} {'est s':>6} {'Young SOR w':>14}")  # fmt: skip
    for dim, m in sizes:
        A, b = gallery.poisson2d(m) if dim == "2-D" else gallery.poisson3d(m)
        mu = 1.0 - np.cos(np.pi / (m + 1))  # lambda_min of the unit-diagonal Laplacian
        fixed = " ".join(f"{its(A, b, w):6d}" for w in FIXED)
        cells = []
        assert np.isclose(ssor_omega(mu), axelsson(4 * mu))
        for w in (axelsson(mu), axelsson(4 * mu), axelsson(16 * mu)):
            cells.append(f"{its(A, b, w):4d} @{w:.4f}")
        t = time.perf_counter()
        w_est, _, _ = choose_ssor_omega(A, None)
        est_s = time.perf_counter() - t
        cells.append(f"{its(A, b, w_est):4d} @{w_est:.4f}")
        w_young = young_omega(1.0 - mu)
        young = f"{its(A, b, w_young):4d} @{w_young:.4f}"
        print(f"{dim} {m}^{dim[0]:<8} {fixed} | "
              + " ".join(f"{c:>14}" for c in cells)
              + f" {est_s:6.2f} {young:>14}", flush=True)  # fmt: skip
    print("cells: iterations (@ omega); -1 = not converged in 5000; est s: seconds of the omega "
          "estimate cg_ssor makes")  # fmt: skip


if __name__ == "__main__":
    main()
