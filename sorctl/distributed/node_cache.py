"""Blocks a node keeps on its own disk between solves, so that the next solve of the same file
with the same cut sends no rows of A (only b and x): one directory per block, named by the
driver's block key (the file's identity, its row pointer and the block's rows), holding the
block's split rows and halo as plain .npy files (read back without pickle) and a `done` mark
written last. Only the latest system's blocks are kept.

The files are written by a thread beside the solve (a pipelined strip rewrites its split rows
into its triangles only after `wait`), a slice at a time with each slice flushed and dropped
from the page cache: the node's memory holds the block once, not once more as dirty pages; a
kept block read back is dropped from the page cache too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from sorctl.distributed.node_block import SPLIT

CACHE_ENV = "SORCTL_BLOCK_CACHE"  # where a node keeps them (default: a directory in its /tmp)
SLICE_BYTES = 16 << 20  # written, flushed and dropped from the page cache at a time
ARRAYS = (*SPLIT, "halo")


def system_of(key: str) -> str:
    """The system part of a block key ("SYSTEM-BLOCK")."""
    return key.split("-", 1)[0]


class BlockCache:
    def __init__(self, root: Path | None = None) -> None:
        default = Path(tempfile.gettempdir()) / "sorctl-blocks"
        self.root = root or Path(os.environ.get(CACHE_ENV, default))
        self.writers: list[threading.Thread] = []

    def load(self, key: str) -> tuple[dict[str, np.ndarray], np.ndarray, int] | None:
        """(split rows, halo, entries) of a block kept under `key`, or None (not kept, kept
        in part, or unreadable: the rows are sent again)."""
        where = self.root / key
        try:
            meta = json.loads((where / "done").read_text())
            arrays = {name: _read_npy(where / f"{name}.npy") for name in ARRAYS}
        except (OSError, ValueError):
            return None
        halo = arrays.pop("halo")
        return arrays, halo, int(meta["nnz"])

    def save(self, key: str, split: dict[str, np.ndarray], halo: np.ndarray, nnz: int) -> None:
        """Keep the block under `key`, in a thread; drops the blocks of other systems."""
        arrays = {**split, "halo": halo}
        writer = threading.Thread(target=self._write, args=(key, arrays, nnz), daemon=False)
        writer.start()
        self.writers.append(writer)

    def _write(self, key: str, arrays: dict[str, np.ndarray], nnz: int) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for old in self.root.iterdir():
                if system_of(old.name) != system_of(key):
                    shutil.rmtree(old, ignore_errors=True)
            where = self.root / key
            shutil.rmtree(where, ignore_errors=True)
            where.mkdir()
            for name, arr in arrays.items():
                _write_npy(where / f"{name}.npy", arr)
            (where / "done").write_text(json.dumps({"nnz": nnz}))
        except OSError:
            pass  # a full or read-only disk: the next solve sends the rows again

    def wait(self) -> None:
        """Until every block handed to save is written."""
        for writer in self.writers:
            writer.join()
        self.writers.clear()


def _read_npy(path: Path) -> np.ndarray:
    """The array, with the file dropped from the page cache after: it is held once, in memory."""
    with open(path, "rb") as fh:
        arr = np.load(fh, allow_pickle=False)
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return arr


def _write_npy(path: Path, arr: np.ndarray) -> None:
    flat = np.ascontiguousarray(arr).reshape(-1)
    step = max(1, SLICE_BYTES // max(flat.itemsize, 1))
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_2_0(fh, np.lib.format.header_data_from_array_1_0(arr))
        for lo in range(0, flat.size, step):
            fh.write(flat[lo : lo + step].data)
            fh.flush()
            os.fsync(fh.fileno())
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
