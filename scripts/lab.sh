#!/usr/bin/env bash
# The simulated lab of Docker hosts (tests/lab): scripts/lab.sh up|down|image [--name NAME].
# Needs root (debootstrap makes the host image the first time) and a Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m tests.lab "$@"
