"""Distributed SOR: rows cut into coloured blocks, blocks swept as jobs on dispy nodes.

partition (pure: blocks, colours, placement) -> blocks (per-block arrays) -> node (the job run
on a node, over a file cache of blocks) -> executor (the seam: dispy or in-process) -> driver
(the outer loop, stopping rules, failures). `python -m solver.distributed` runs a solve from a
system file inside the client container.
"""
