"""Pages of files given back: a mapped file's pages leave memory, and so do a read file's cached
pages (counted with mincore, which tells which pages of a mapping are in memory)."""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys

from sorctl.distributed.file_pages import drop_page_cache, release_file_pages

SIZE = 16 << 20


def resident_pages(path) -> int:
    """How many of the file's pages are in memory now."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    with open(path, "rb") as fh:
        m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    try:
        first = ctypes.c_char.from_buffer(m)
        addr = ctypes.addressof(first)
        del first  # the mapping can close again
        vec = ctypes.create_string_buffer((len(m) + mmap.PAGESIZE - 1) // mmap.PAGESIZE)
        assert libc.mincore(addr, len(m), vec) == 0, os.strerror(ctypes.get_errno())
        return sum(b & 1 for b in vec.raw)
    finally:
        m.close()


def a_file(tmp_path):
    path = tmp_path / "data.bin"
    with open(path, "wb") as fh:
        fh.write(os.urandom(SIZE))
        fh.flush()
        os.fsync(fh.fileno())  # clean pages: dirty ones are not dropped before they are written
    with open(path, "rb") as fh:
        fh.read()  # every page in the page cache
    assert resident_pages(path) > 0.9 * SIZE / mmap.PAGESIZE
    return path


CHILD = """
import mmap, sys
from sorctl.distributed.file_pages import release_file_pages
with open(sys.argv[1], "rb") as fh:
    m = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
total = sum(m[i] for i in range(0, len(m), mmap.PAGESIZE))  # every page mapped in
print(release_file_pages())
sys.stdin.read()  # still mapped while the parent counts
"""


def test_mapped_file_pages_leave_memory(tmp_path):
    path = a_file(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        taken = int(child.stdout.readline())
        assert taken > 0
        assert resident_pages(path) < 0.1 * SIZE / mmap.PAGESIZE
    finally:
        child.communicate("", timeout=60)


def test_cached_pages_of_files_read_are_dropped(tmp_path):
    path = a_file(tmp_path)
    assert drop_page_cache(str(tmp_path)) == 1
    assert resident_pages(path) < 0.1 * SIZE / mmap.PAGESIZE


def test_nothing_to_take(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n")
    assert release_file_pages(str(maps)) == 0
    assert release_file_pages(str(tmp_path / "absent")) == 0
    assert drop_page_cache(str(tmp_path / "absent")) == 0
