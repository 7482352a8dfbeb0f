"""Distributed SOR: rows cut into coloured blocks, blocks swept by workers on dispy nodes.

partition (pure: blocks, colours, placement) -> blocks (per-block arrays) -> node (the worker on
a node: blocks in memory, sweep/residual/gather requests) -> executor (the seam: in-process, or
dispy_executor = dispy-placed workers reached through workers.WorkerPool) -> driver (the outer
loop, stopping rules, failures). `python -m solver.distributed` runs a solve from a system file
inside the client container; wire is what it tells the host.
"""
