"""Distributed SOR: rows cut into coloured blocks, blocks swept by workers on dispy nodes.

partition (pure: blocks, colours, placement) -> blocks (per-block arrays and the links between
blocks) -> schedule (the order of sweeps) -> node (the worker on a node: blocks in memory, rounds
of iterations) with mesh (its direct links to the other workers) -> executor (the seam:
dispy_executor = dispy-placed workers reached through workers.WorkerPool; plain processes or
threads in the tests) -> driver (the outer loop, stopping rules, failures).
`python -m sorctl.distributed` runs a solve from a system file inside the client container;
wire is what it tells the host.
"""
