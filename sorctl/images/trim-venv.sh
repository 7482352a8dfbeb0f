#!/bin/sh
# Drops what a runtime venv never uses: test suites, examples, typing stubs and Cython sources
# (the venv has no pip or setuptools: pip runs from its wheel). The big numeric packages go
# sourceless: byte-code beside where the source was (compileall -b) and no .py, 11 MB less;
# their traceback lines show no source text.
# Byte-code must stay: the runtime user cannot write it, so every process would compile
# numpy, scipy and numba again.
set -eu
venv=$1
for sp in "$venv"/lib/python3*/site-packages; do
    for pkg in numpy scipy numba llvmlite; do
        if [ -d "$sp/$pkg" ]; then find "$sp/$pkg" -depth -type d -name tests -exec rm -rf {} +; fi
    done
    rm -rf "$sp"/dispy/examples "$sp"/pycos/examples "$sp"/numpy/_core/include \
        "$sp"/numpy/doc "$sp"/numpy/distutils "$sp"/numba/cuda
    # numba's TBB threading layer needs libtbb, which is not installed: it is never used.
    rm -f "$sp"/numba/np/ufunc/tbbpool.*.so
    # numpy and scipy bundle byte-identical copies of some libraries (libgfortran): keep one.
    if [ -d "$sp/numpy.libs" ] && [ -d "$sp/scipy.libs" ]; then
        for lib in "$sp"/scipy.libs/*; do
            twin="$sp/numpy.libs/${lib##*/}"
            if [ -f "$twin" ] && cmp -s "$lib" "$twin"; then ln -sf "../numpy.libs/${lib##*/}" "$lib"; fi
        done
    fi
    # scipy: the solver uses sparse (with linalg, csgraph), linalg and io; the rest is 60 MB
    # the node image cannot afford (target 400 MB, llvmlite alone is 160 MB). Without special,
    # a few functions the solver does not use fail when called (linalg.logm, sparse expm).
    for sub in cluster constants datasets differentiate fft fftpack integrate interpolate misc \
        ndimage odr optimize signal spatial special stats; do
        rm -rf "${sp:?}/scipy/$sub"
    done
    for pkg in numpy scipy numba llvmlite; do
        if [ -d "$sp/$pkg" ]; then
            "$venv/bin/python" -m compileall -q -j 0 -b "$sp/$pkg"
            find "$sp/$pkg" -name '*.py' -delete
            find "$sp/$pkg" -depth -type d -name __pycache__ -exec rm -rf {} +
        fi
    done
    find "$sp" \( -name '*.pyi' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.c' -o -name '*.h' \) \
        -delete
    # Everything else keeps its source and gets byte-code in __pycache__ (pip ran --no-compile).
    "$venv/bin/python" -m compileall -q -j 0 "$sp"
done
