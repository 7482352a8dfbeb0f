"""Distributed solves on a dispy cluster: SOR and SSOR sweeps of coloured blocks, and CG
preconditioned by that symmetric sweep (cg-ssor), which on a grid in natural order runs as
pipelined strips instead. Workers on the dispy nodes hold the blocks and pass values to each other.

rows (A's rows a window at a time: from a file as it streams, or a matrix held whole) ->
partition (blocks, colours, placement, pipeline strips, from passes over the pattern) -> blocks
(a block made on its worker from the rows sent to it, the driver's record of it, the links
between blocks) -> schedule (the order of sweeps) and pipeline (the chunks of a pipelined sweep)
-> the worker on a node: node (blocks in memory, SOR rounds, a copy of the next worker's
values), node_cg, node_pipeline and node_lanczos (CG rounds on coloured blocks and on strips,
the omega estimate's steps), node_block (a block as a worker holds it), node_cache (blocks kept
on the node's disk for the next solve), with mesh (its direct links to the other workers, over
tls_link on a TLS cluster) -> executor (the
seam: dispy_executor = dispy-placed workers reached through workers.WorkerPool, dispy_compat its
shims for newer Pythons; plain processes or threads in the tests) -> driver (the outer loop,
stopping rules, failures). `python -m sorctl.distributed` runs a solve from a system file inside
the client container (job: what the host hands it); wire is what it tells the host.
"""
