#!/bin/sh
# Drops what a runtime venv never uses: pip, setuptools, test suites, examples, typing stubs
# and Cython sources. Keeps the byte-code: the runtime user cannot write it, so without it
# every process would compile numpy, scipy and numba again.
set -eu
venv=$1
"$venv/bin/python" -m pip uninstall -q -y pip setuptools
for sp in "$venv"/lib/python3*/site-packages; do
    for pkg in numpy scipy numba llvmlite; do
        if [ -d "$sp/$pkg" ]; then find "$sp/$pkg" -depth -type d -name tests -exec rm -rf {} +; fi
    done
    rm -rf "$sp"/dispy/examples "$sp"/pycos/examples "$sp"/numpy/_core/include \
        "$sp"/numpy/doc "$sp"/numba/cuda
    # scipy: the solver uses sparse (with linalg, csgraph), linalg and io; the rest is 50 MB
    # the node image cannot afford (target 400 MB, llvmlite alone is 180 MB).
    for sub in cluster constants datasets differentiate fft fftpack integrate interpolate misc \
        ndimage odr optimize signal spatial stats; do
        rm -rf "${sp:?}/scipy/$sub"
    done
    find "$sp" \( -name '*.pyi' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.c' -o -name '*.h' \) \
        -delete
done
