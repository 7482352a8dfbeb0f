"""Give back the memory a process's loading took of its libraries' files.

Loading numba and the compiled kernels reads most of libllvmlite (about 85 MB mapped) and
leaves about 40 MB more of the environment's files in the page cache. Those pages are clean
copies of files, but a container's memory (its cgroup) counts them until the kernel needs the
room, and most are never read again: a worker runs its kernels' machine code, not LLVM. So the
node's daemon and the client hand them back once loaded; a page used again is read again from
the file on first touch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
import sys

MADV_PAGEOUT = 21  # Linux 5.4 and later; Python's mmap module names it only where built so


def release_after_loading() -> int:
    """Both of the below, for this Python environment's files; returns the mappings taken."""
    taken = release_file_pages()
    drop_page_cache(sys.prefix)
    return taken


def release_file_pages(maps: str = "/proc/self/maps") -> int:
    """Ask the kernel to reclaim this process's file-backed mapped pages now; returns how many
    mappings it took (0 where it cannot: another OS, an older kernel, no /proc). The kernel
    reclaims only the pages of files this user owns or may write (the images give the runtime
    user libllvmlite for this)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        with open(maps, encoding="ascii") as fh:
            lines = fh.readlines()
    except OSError:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    taken = 0
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue  # anonymous memory, the heap and the stack stay
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if libc.madvise(lo, hi - lo, MADV_PAGEOUT) == 0:
            taken += 1
    return taken


def drop_page_cache(root: str) -> int:
    """Drop the cached, unmapped pages of every file under root (what reading .pyc files and
    loading libraries left behind); returns the files told."""
    if not hasattr(os, "posix_fadvise"):
        return 0
    told = 0
    for where, _, files in os.walk(root):
        for name in files:
            try:
                fd = os.open(os.path.join(where, name), os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue  # not ours to read, or a dangling link
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):  # links followed: the images link one
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    told += 1
            finally:
                os.close(fd)
    return told
