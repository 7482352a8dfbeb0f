#!/usr/bin/env bash
# The main job on a fresh machine: build the images, bring up a relay cluster, solve the bundled
# example on it, show the cluster, take it down. With no Docker engine it solves on the local
# backend instead. KEEP=1 leaves the cluster running; NODES=N changes its size (default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
EXAMPLE=examples/poisson2d-64.npz

if ! docker info >/dev/null 2>&1; then
    echo "demo: no Docker engine answers (\`sorctl doctor\` says why): solving $EXAMPLE on the local backend" >&2
    exec "$BIN/sorctl" solve "$EXAMPLE" --local
fi

./scripts/install-missing.sh
# `sorctl up` names `sorctl doctor` itself when it fails; a failed build is told here.
"$BIN/sorctl" images build || {
    rc=$?
    echo "demo: the image build failed: run \`$BIN/sorctl doctor\` to check this machine" >&2
    exit "$rc"
}
"$BIN/sorctl" up --nodes "${NODES:-4}" --relay
if [ "${KEEP:-0}" != "1" ]; then
    trap '"$BIN/sorctl" down' EXIT
fi
"$BIN/sorctl" status
"$BIN/sorctl" solve "$EXAMPLE" --cluster sorctl
