"""Our SOR and cg-ssor against PETSc (one rank) on the same matrices, in one run.

Install (Debian 12; PETSc 3.18 through its petsc4py, built against Debian's numpy 1.24, so the
venv must hold a numpy 1.x: numpy 2 changed the C ABI petsc4py was compiled for):

    apt-get update && apt-get install -y python3-petsc4py-real
    /usr/bin/python3 -m venv --system-site-packages .venv-petsc
    .venv-petsc/bin/pip install -e . 'numpy>=1.26,<2'

Run (PETSC_DIR names Debian's "real" PETSc: petsc4py's .pth file reads it at interpreter start;
OpenMPI refuses root without the two OMPI variables):

    export PETSC_DIR=/usr/lib/petscdir/petsc3.18/x86_64-linux-gnu-real
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    .venv-petsc/bin/python bench/bench_petsc.py [--quick] [--skip-slow] [--sweeps-only]
    .venv-petsc/bin/python bench/bench_petsc.py --ranks 2 [--quick]

--ranks 2: PETSc CG + PCSOR on 2 MPI ranks (this script under `mpirun -n 2`; PETSc's parallel
SOR is local to each rank, -pc_sor_local_symmetric: block Jacobi with SSOR inside) against
sorctl's cg-ssor on a cluster of 2 nodes of 1 CPU each (brought up as cg-bench-petsc, always
removed), same omega both sides (sorctl's rule: a grid in natural order sweeps on the cluster as
pipelined strips, one machine's order, so it takes the local rule), to rtol 1e-6.

Per sweep: our lexicographic SOR sweep against MatSOR(SOR_FORWARD_SWEEP), best of a few
repeats. To rtol 1e-6, same omega on both sides (ours: solve(); PETSc: KSPSolve after KSPSetUp):
- sor against Richardson + PCSOR forward. PETSc's Richardson then takes PCApplyRichardson's
  shortcut: it runs max_it sweeps and checks no tolerance. So PETSc is given max_it = our sweep
  count (equal sweep counts; its true residual is printed to show it is the same iterate
  quality); our time includes our residual checks, PETSc's has none.
- cg-ssor against CG + PCSOR symmetric (SSOR, zero initial guess). PETSc's CG uses the
  unpreconditioned residual norm (-ksp_norm_type unpreconditioned) so both stop on
  ||b - Ax|| <= 1e-6 ||b|| (ours on the true residual, PETSc's on the recursive one); PETSc's
  count with its default (preconditioned) norm is printed too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

DEBIAN_PETSC = "/usr/lib/petscdir/petsc3.18/x86_64-linux-gnu-real"
RTOL = 1e-6

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def import_petsc():
    """petsc4py's PETSc module, or one line on stderr and exit 1."""
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    petsc_dir = os.environ.setdefault("PETSC_DIR", DEBIAN_PETSC)
    site = os.path.join(petsc_dir, "lib/python3/dist-packages")
    if os.path.isdir(site) and site not in sys.path:
        sys.path.append(site)  # what petsc4py's .pth does when PETSC_DIR is set at start
    try:
        import petsc4py

        petsc4py.init([sys.argv[0]])
        from petsc4py import PETSc
    except Exception as exc:  # missing, or built for another numpy
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(
            f"bench_petsc: petsc4py unavailable ({msg}); see this script's docstring",
            file=sys.stderr,
        )
        sys.exit(1)
    return PETSc


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def petsc_system(PETSc, A, b):
    M = PETSc.Mat().createAIJ(
        size=A.shape, csr=(A.indptr.astype(PETSc.IntType), A.indices.astype(PETSc.IntType), A.data)
    )
    M.assemble()
    return M, PETSc.Vec().createWithArray(b.copy())


def per_sweep(PETSc, A, b, omega: float, sweeps: int) -> tuple[float, float]:
    from sorctl.solver.kernels import make_sweeper

    sweep, x = make_sweeper(A, omega, "sor"), np.zeros(len(b))
    sweep(b, x, 1)
    ours = best(lambda: sweep(b, x, sweeps), 3) / sweeps
    M, bv = petsc_system(PETSc, A, b)
    xv = bv.duplicate()
    xv.set(0.0)
    fwd = PETSc.Mat.SORType.FORWARD_SWEEP
    M.SOR(bv, xv, omega, fwd, 0.0, 1, 1)
    theirs = best(lambda: M.SOR(bv, xv, omega, fwd, 0.0, sweeps, 1), 3) / sweeps
    return ours, theirs


def petsc_ksp(PETSc, A, b, ksp_type: str, sor: str, omega: float, max_it: int, norm: str | None):
    """(iterations, seconds of KSPSolve, true relative residual) of PETSc on one rank."""
    M, bv = petsc_system(PETSc, A, b)
    opts = PETSc.Options()
    prefix = f"b{time.monotonic_ns()}_"  # fresh options per solve
    opts[f"{prefix}ksp_type"] = ksp_type
    opts[f"{prefix}pc_type"] = "sor"
    opts[f"{prefix}pc_sor_{sor}"] = None
    opts[f"{prefix}pc_sor_omega"] = omega
    opts[f"{prefix}ksp_rtol"] = RTOL
    opts[f"{prefix}ksp_atol"] = 0.0
    opts[f"{prefix}ksp_max_it"] = max_it
    if norm:
        opts[f"{prefix}ksp_norm_type"] = norm
    ksp = PETSc.KSP().create()
    ksp.setOptionsPrefix(prefix)
    ksp.setOperators(M)
    ksp.setFromOptions()
    ksp.setUp()
    xv = bv.duplicate()
    xv.set(0.0)
    t = time.perf_counter()
    ksp.solve(bv, xv)
    seconds = time.perf_counter() - t
    x = xv.getArray().copy()
    rel = float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))
    its = ksp.getIterationNumber()
    ksp.destroy()
    return its, seconds, rel


def mpi_worker(dim: int, m: int, omega: float) -> None:
    """One rank of PETSc's CG + SSOR on Poisson (run by mpirun); rank 0 prints a JSON line."""
    import json

    PETSc = import_petsc()
    from sorctl.solver import gallery

    comm = PETSc.COMM_WORLD
    rank, size = comm.getRank(), comm.getSize()
    A, b = gallery.poisson2d(m) if dim == 2 else gallery.poisson3d(m)
    n = A.shape[0]
    lo, hi = rank * n // size, (rank + 1) * n // size
    sub = A[lo:hi]
    it = PETSc.IntType
    M = PETSc.Mat().createAIJ(
        size=((hi - lo, n), (hi - lo, n)),
        csr=(sub.indptr.astype(it), sub.indices.astype(it), sub.data),
        comm=comm,
    )
    M.assemble()
    bv, xv = M.createVecLeft(), M.createVecRight()
    bv.setArray(b[lo:hi].copy())
    xv.set(0.0)
    opts = PETSc.Options()
    for key, value in (("ksp_type", "cg"), ("pc_type", "sor"), ("pc_sor_local_symmetric", None),
                       ("pc_sor_omega", omega), ("ksp_rtol", RTOL), ("ksp_atol", 0.0),
                       ("ksp_max_it", 100_000), ("ksp_norm_type", "unpreconditioned")):  # fmt: skip
        opts[f"p2_{key}"] = value
    ksp = PETSc.KSP().create(comm=comm)
    ksp.setOptionsPrefix("p2_")
    ksp.setOperators(M)
    ksp.setFromOptions()
    ksp.setUp()
    comm.barrier()
    t = time.perf_counter()
    ksp.solve(bv, xv)
    comm.barrier()
    seconds = time.perf_counter() - t
    r = bv.duplicate()
    M.mult(xv, r)
    r.aypx(-1.0, bv)
    rel = r.norm() / bv.norm()
    if rank == 0:
        print(json.dumps({"its": ksp.getIterationNumber(), "s": seconds, "rel": rel}))


def two_ranks(cases) -> None:
    """PETSc on 2 MPI ranks against cg-ssor on a 2-node cluster (see the docstring)."""
    import json
    import subprocess

    import sorctl
    from sorctl.solver import gallery
    from sorctl.solver.omega import choose_ssor_omega

    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    env.setdefault("PETSC_DIR", DEBIAN_PETSC)
    print("PETSc CG + local SSOR on 2 MPI ranks (mpirun -n 2) vs sorctl cg-ssor, 2 nodes x 1 CPU")
    with sorctl.Cluster.up("cg-bench-petsc", nodes=2, cpus_per_node=1) as cluster:
        for name, dim, m in cases:
            A, b = gallery.poisson2d(m) if dim == 2 else gallery.poisson3d(m)
            w = choose_ssor_omega(A, None)[0]  # a grid sweeps as pipelined strips: the local rule
            cmd = ["mpirun", "-n", "2", sys.executable, __file__, "--mpi-worker",
                   f"{dim},{m},{w!r}"]  # fmt: skip
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            petsc = json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1])
            r = cluster.solve(A, b, method="cg-ssor", omega=w, rtol=RTOL, maxiter=100_000)
            it_s = r.timings.get("iterate_s", r.time_s)
            print(f"{name:11} omega {w:.4f}: sorctl {r.iterations:6d} its {it_s:7.2f} s iterating "
                  f"({r.time_s:6.2f} s in the client, rel {r.relative_residual:.1e})  PETSc "
                  f"{petsc['its']:6d} its {petsc['s']:7.2f} s (rel {petsc['rel']:.1e})  "
                  f"its sorctl/PETSc {r.iterations / petsc['its']:.2f}  time (iterating) "
                  f"sorctl/PETSc {it_s / petsc['s']:.2f}", flush=True)  # fmt: skip


def sweep_ratios(PETSc, cases, rounds: int) -> None:
    """Per-sweep time against MatSOR, `rounds` alternated measurements, medians."""
    import statistics

    from sorctl.solver import gallery
    from sorctl.solver.omega import young_omega

    print(f"per sweep, ours vs PETSc MatSOR forward: best of 3 repeats per round, median of "
          f"{rounds} alternated rounds")  # fmt: skip
    for name, dim, m in cases:
        A, b = gallery.poisson2d(m) if dim == 2 else gallery.poisson3d(m)
        w = young_omega(np.cos(np.pi / (m + 1)))
        pairs = [per_sweep(PETSc, A, b, w, 3 if A.shape[0] > 2_000_000 else 5)
                 for _ in range(rounds)]  # fmt: skip
        ours = statistics.median(p[0] for p in pairs)
        theirs = statistics.median(p[1] for p in pairs)
        ratios = ", ".join(f"{p[0] / p[1]:.2f}" for p in pairs)
        print(f"{name:11} ours {ours * 1e3:7.2f} ms  PETSc {theirs * 1e3:7.2f} ms  "
              f"median ratio {statistics.median(p[0] / p[1] for p in pairs):.2f} "
              f"(rounds: {ratios})", flush=True)  # fmt: skip


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--mpi-worker":
        dim, m, w = sys.argv[2].split(",")
        mpi_worker(int(dim), int(m), float(w))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument(
        "--skip-slow",
        action="store_true",
        help="no SOR-to-1e-6 row above 3M rows (2-D 2048^2: minutes)",
    )
    ap.add_argument("--ranks", type=int, choices=(1, 2), default=1)
    ap.add_argument("--sweeps-only", type=int, metavar="ROUNDS", default=0,
                    help="only the per-sweep ratio, ROUNDS alternated rounds, medians")  # fmt: skip
    args = ap.parse_args()
    if args.quick:
        cases = [("2-D 256^2", 2, 256), ("2-D 512^2", 2, 512), ("3-D 48^3", 3, 48)]
    else:
        cases = [("2-D 1024^2", 2, 1024), ("2-D 2048^2", 2, 2048), ("3-D 128^3", 3, 128)]
    if args.ranks == 2:
        two_ranks(cases)
        return
    PETSc = import_petsc()
    if args.sweeps_only:
        sweep_ratios(PETSc, cases, args.sweeps_only)
        return

    from sorctl import solve
    from sorctl.solver import gallery
    from sorctl.solver.omega import ssor_omega, young_omega

    print(f"PETSc {'.'.join(map(str, PETSc.Sys.getVersion()))}, 1 rank; ours: local, 1 thread")
    for name, dim, m in cases:
        A, b = gallery.poisson2d(m) if dim == 2 else gallery.poisson3d(m)
        n = A.shape[0]
        mu = 1.0 - np.cos(np.pi / (m + 1))  # exact for Poisson: both sides get the same omega
        w_sor, w_ssor = young_omega(1.0 - mu), ssor_omega(mu)
        ours, theirs = per_sweep(PETSc, A, b, w_sor, 3 if n > 2_000_000 else 5)
        print(f"\n{name} (n = {n}, nnz = {A.nnz})")
        print(f"  per sweep: ours {ours * 1e3:7.2f} ms  PETSc MatSOR forward {theirs * 1e3:7.2f} ms"
              f"  ours/PETSc {ours / theirs:.2f}", flush=True)  # fmt: skip
        if not (args.skip_slow and n > 3_000_000):
            r = solve(A, b, omega=w_sor, rtol=RTOL, maxiter=100_000, method="sor")
            its, sec, rel = petsc_ksp(PETSc, A, b, "richardson", "forward", w_sor, r.iterations,
                                      None)  # fmt: skip
            print(f"  sor     omega {w_sor:.4f}: ours {r.iterations:6d} sweeps {r.time_s:7.2f} s "
                  f"(rel {r.relative_residual:.1e})  PETSc Richardson+SOR {its:6d} sweeps "
                  f"{sec:7.2f} s (rel {rel:.1e})  time ours/PETSc {r.time_s / sec:.2f}",
                  flush=True)  # fmt: skip
        else:
            print("  sor     to 1e-6: skipped (--skip-slow)")
        r = solve(A, b, omega=w_ssor, rtol=RTOL, maxiter=100_000, method="cg-ssor")
        its, sec, rel = petsc_ksp(PETSc, A, b, "cg", "symmetric", w_ssor, 100_000,
                                  "unpreconditioned")  # fmt: skip
        its_default, _, _ = petsc_ksp(PETSc, A, b, "cg", "symmetric", w_ssor, 100_000, None)
        print(f"  cg-ssor omega {w_ssor:.4f}: ours {r.iterations:6d} its    {r.time_s:7.2f} s "
              f"(rel {r.relative_residual:.1e}, setup {r.timings['setup_s']:.2f} s)  "
              f"PETSc CG+SSOR {its:6d} its    {sec:7.2f} s (rel {rel:.1e}; "
              f"{its_default} its with its default norm)  time ours/PETSc {r.time_s / sec:.2f}, "
              f"its ours/PETSc {r.iterations / its:.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
