#!/usr/bin/env bash
# Installs, with apt-get, what this machine lacks for the images and tests, saying so in one
# line: debootstrap when the Docker engine has no base image to build on (no python:3.11-slim,
# no sorctl-base:bookworm; with no registry sorctl makes the latter with debootstrap), and with
# --tests what the full test suite needs as well: debootstrap always (the simulated lab's host
# image is made with it) and chromium and its driver (the dashboard's browser tests). Only as
# root with apt-get; otherwise it installs nothing and whatever needs the package says so itself.
#   usage: scripts/install-missing.sh [--tests]
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

tests=false
[ "${1:-}" = "--tests" ] && tests=true
missing=() why=()
if ! have debootstrap; then
    if $tests; then
        missing+=(debootstrap) why+=("the offline base image and the lab's host image")
    elif docker info >/dev/null 2>&1 \
        && ! docker image inspect python:3.11-slim >/dev/null 2>&1 \
        && ! docker image inspect sorctl-base:bookworm >/dev/null 2>&1; then
        missing+=(debootstrap) why+=("the offline base image")
    fi
fi
if $tests; then
    have chromium || missing+=(chromium)
    have chromedriver || missing+=(chromium-driver)
    [ ${#missing[@]} -eq ${#why[@]} ] || why+=("the browser tests")
fi
[ ${#missing[@]} -gt 0 ] || exit 0
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || exit 0

reasons=$(IFS=,; echo "${why[*]}")
echo "installing ${missing[*]} with apt-get (for ${reasons//,/ and })" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
    echo "install-missing: apt-get install ${missing[*]} failed:" >&2
    tail -n 5 "$log" >&2
    exit 1
fi
