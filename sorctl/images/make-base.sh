#!/usr/bin/env bash
# Makes the offline base image (Debian + python3, python3-venv, iproute2) with debootstrap and
# `docker import`, for machines where no container registry answers. Needs root and debootstrap.
#   usage: make-base.sh TAG MIRROR [SUITE]
set -euo pipefail
tag=$1 mirror=$2 suite=${3:-bookworm}
[ "$(id -u)" = 0 ] || { echo "make-base.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || {
    echo "make-base.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

rootfs=$(mktemp -d /var/tmp/sorctl-base.XXXXXX)
cleanup() {
    # debootstrap may leave /proc or /sys mounted inside the chroot when it fails half-way.
    for m in proc sys dev/pts dev; do umount -l "$rootfs/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

# env -i: the host's PIP_*, http_proxy and locale settings must not leak into the chroot.
# iproute2 lets the entrypoint add SORCTL_ROUTES; util-linux (essential) brings setpriv.
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,iproute2 \
    "$suite" "$rootfs" "$mirror" >&2

# Strip what a container never reads: apt lists and caches, docs, man pages, locales.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
    "$rootfs"/usr/share/lintian "$rootfs"/usr/share/linda
# glibc's iconv modules (nothing here converts charsets through iconv) and the time zone
# database (containers run in UTC; /etc/localtime then falls back to UTC): 12 MB.
rm -rf "$rootfs"/usr/lib/x86_64-linux-gnu/gconv "$rootfs"/usr/share/zoneinfo

tar --numeric-owner -C "$rootfs" -c . |
    docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' \
        -m "debootstrap --variant=minbase $suite" - "$tag" >&2
