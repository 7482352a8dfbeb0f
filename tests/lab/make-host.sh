#!/usr/bin/env bash
# Makes the simulated lab's host image: Debian with a Docker engine (docker.io), sshd and
# iptables, made offline with debootstrap and `docker import` like sorctl's own base image.
# The entry script (host-entry.sh) is put into each container when it is created, so editing it
# makes no new image. Needs root and debootstrap.
#   usage: make-host.sh TAG MIRROR [SUITE]
set -euo pipefail
tag=$1 mirror=$2 suite=${3:-bookworm}
[ "$(id -u)" = 0 ] || { echo "make-host.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || {
    echo "make-host.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

rootfs=$(mktemp -d /var/tmp/sorctl-labhost.XXXXXX)
cleanup() {
    for m in proc sys dev/pts dev; do umount -l "$rootfs/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

# docker.io brings dockerd, containerd, runc and the docker CLI (`docker system dial-stdio` is
# what ssh:// clients run on the host); fuse-overlayfs in case overlay2 is refused.
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    debootstrap --variant=minbase \
    --include=docker.io,iptables,iproute2,ca-certificates,procps,fuse-overlayfs,openssh-server \
    "$suite" "$rootfs" "$mirror" >&2

rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/etc/ssh/ssh_host_*

tar --numeric-owner -C "$rootfs" -c . |
    docker import -c 'ENV LANG=C.UTF-8' -c 'ENTRYPOINT ["/usr/local/bin/lab-host"]' \
        -c 'LABEL org.sorctl.lab-image=host' -m "sorctl lab host ($suite)" - "$tag" >&2
