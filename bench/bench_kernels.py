"""SOR sweep speed against the memory-bandwidth bound, and time to 1e-8 against CG.

    .venv/bin/python bench/bench_kernels.py           # the issue's sizes (minutes; quiet machine)
    .venv/bin/python bench/bench_kernels.py --quick   # small sizes, a smoke run

The bound is bytes moved per sweep / triad bandwidth measured in this run with a numba triad
a[i] = b[i] + s c[i] (24 bytes per element: two reads and a write, write-allocate not counted),
on one thread and on two. Bytes per sweep of the lexicographic sweep, on the layout it reads
(csr.split_tridiagonal): 12 per far nonzero (|j - i| > 1: 8 value + 4 index) + 52 per row (x
read and written, b, lower, diag, upper, 4 of row pointer); dense 8 n^2 (A once). The
multicolour sweep reads plain CSR: 12 per nonzero + 24 per row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sorctl import solve  # noqa: E402
from sorctl.solver import gallery  # noqa: E402
from sorctl.solver.kernels import make_sweeper  # noqa: E402
from sorctl.solver.kernels.multicolor import MulticolourSOR  # noqa: E402


@numba.njit(parallel=True, cache=True)
def _triad(a, b, c, s):
    for i in numba.prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


def triad_bandwidth(threads: int, n: int = 1 << 25, repeats: int = 7) -> float:
    """Best-of triad bandwidth in bytes/s on `threads` threads (arrays far larger than cache)."""
    numba.set_num_threads(threads)
    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    _triad(a, b, c, 3.0)
    best = min(_timed(lambda: _triad(a, b, c, 3.0)) for _ in range(repeats))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return 24 * n / best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def sweep_bytes(A, split: bool = True) -> int:
    if sp.issparse(A):
        if not split:
            return 12 * A.nnz + 24 * A.shape[0]
        coo = A.tocoo()
        far = int(np.count_nonzero(np.abs(coo.col.astype(np.int64) - coo.row) > 1))
        return 12 * far + 52 * A.shape[0]
    return 8 * A.shape[0] ** 2


def seconds_per_sweep(sweep, b, n, sweeps: int, repeats: int = 3) -> float:
    x = np.zeros(n)
    sweep(b, x, 1)  # compile / warm the caches
    return min(_timed(lambda: sweep(b, x, sweeps)) for _ in range(repeats)) / sweeps


def time_to_solution(A, b, rtol: float, skip: bool) -> tuple[str, str]:
    if skip:
        return "-", "-"
    r = solve(A, b, rtol=rtol, maxiter=100_000)
    sor = f"{r.time_s:.2f}s/{r.iterations}" + ("" if r.converged else "(!)")
    sor += f" (omega {r.timings['omega_s']:.2f}s)"
    its = [0]
    t = time.perf_counter()
    _, info = spla.cg(
        A, b, rtol=rtol, maxiter=100_000, callback=lambda _: its.__setitem__(0, its[0] + 1)
    )
    cg = f"{time.perf_counter() - t:.2f}s/{its[0]}" + ("" if info == 0 else "(!)")
    return sor, cg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--no-solve", action="store_true", help="skip the time-to-1e-8 columns")
    args = ap.parse_args()

    if args.quick:
        cases = [
            ("2-D Poisson 256^2", lambda: gallery.poisson2d(256)),
            ("2-D Poisson 512^2", lambda: gallery.poisson2d(512)),
            ("3-D Poisson 48^3", lambda: gallery.poisson3d(48)),
            ("dense n=1000", lambda: gallery.dense_spd(1000)),
        ]
    else:
        cases = [
            ("2-D Poisson 1024^2", lambda: gallery.poisson2d(1024)),
            ("2-D Poisson 2048^2", lambda: gallery.poisson2d(2048)),
            ("3-D Poisson 128^3", lambda: gallery.poisson3d(128)),
            ("dense n=4000", lambda: gallery.dense_spd(4000)),
        ]

    bw1, bw2 = triad_bandwidth(1), triad_bandwidth(2)
    print(
        f"numba triad (24 B/element): 1 thread {bw1 / 1e9:.1f} GB/s, 2 threads {bw2 / 1e9:.1f} GB/s"
    )
    print(
        f"{'system':22} {'sweep':>9} {'bound':>9} {'ratio':>6} {'mc 2thr':>9} {'bound2':>9} "
        f"{'ratio':>6} {'SOR to 1e-8':>28} {'CG to 1e-8':>14}"
    )
    for name, make in cases:
        A, b = make()
        n = A.shape[0]
        sweeps = 3 if n > 2_000_000 or not sp.issparse(A) else 5
        t_sor = seconds_per_sweep(make_sweeper(A, 1.9, "sor"), b, n, sweeps)
        bound1 = sweep_bytes(A) / bw1
        mc = ("-", "-", "-")
        if sp.issparse(A):
            numba.set_num_threads(2)
            mcs = MulticolourSOR(A, 1.9)
            t_mc = seconds_per_sweep(mcs.sweep_permuted, b[mcs.perm], n, sweeps)
            bound2 = sweep_bytes(A, split=False) / bw2
            mc = (f"{t_mc * 1e3:.2f}ms", f"{bound2 * 1e3:.2f}ms", f"{t_mc / bound2:.2f}")
        sor, cg = time_to_solution(A, b, 1e-8, args.no_solve)
        print(
            f"{name:22} {t_sor * 1e3:7.2f}ms {bound1 * 1e3:7.2f}ms {t_sor / bound1:6.2f} "
            f"{mc[0]:>9} {mc[1]:>9} {mc[2]:>6} {sor:>28} {cg:>14}",
            flush=True,
        )
    print(
        "sweep: seconds per lexicographic SOR sweep (1 thread); mc 2thr: multicolour sweep on "
        "2 threads, per sweep, permutation excluded; SOR to 1e-8: solve() with the estimated "
        "omega (time incl. the estimate / sweeps, and the estimate alone); CG: scipy cg, no "
        "preconditioner (time / iterations); (!) = did not converge"
    )


if __name__ == "__main__":
    main()
