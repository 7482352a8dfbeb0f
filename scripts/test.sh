#!/usr/bin/env bash
# Full test suite. Needs the venv (make test creates it). With a Docker engine it first builds the
# images offline (skipped per role when the build inputs are unchanged); under CI=true a missing
# engine or any skipped test fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
./scripts/install-missing.sh --tests
if docker info >/dev/null 2>&1; then
    "$BIN/sorctl" images build
elif [ "${CI:-}" = "true" ]; then
    echo "scripts/test.sh: no Docker engine answers, and CI=true needs the integration tests" >&2
    exit 1
fi
exec "$BIN/pytest" "$@"
