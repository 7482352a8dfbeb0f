#!/bin/bash
# PID 1 of a simulated lab host: a Docker engine in a container (no --privileged needed; see
# tests/lab/__init__.py for the flags). LAB_ROLE=host runs sshd and dockerd; LAB_ROLE=router
# only forwards between the lab's subnets.
#   LAB_ROUTES      "SUBNET via GATEWAY" pairs joined by commas (to the other subnets)
#   LAB_CGROUP      the cgroup parent of the inner engine's containers (unique per host)
# Put into the container before it starts: /etc/lab/tls/{ca,cert,key}.pem (dockerd's TLS on
# 2376), /root/.ssh/authorized_keys and /etc/ssh/ssh_host_ed25519_key (sshd on 22).
set -euo pipefail
die() { echo "lab-host: $*" >&2; exit 1; }

if [ -n "${LAB_ROUTES:-}" ]; then
    IFS=, read -ra routes <<<"$LAB_ROUTES"
    for route in "${routes[@]}"; do
        # shellcheck disable=SC2086
        ip route replace $route || die "cannot add route '$route'"
    done
fi

if [ "${LAB_ROLE:-host}" = router ]; then
    [ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || die "ip_forward is off (--sysctl)"
    trap 'exit 0' TERM INT
    while :; do sleep 86400 & wait $!; done
fi

# cgroup v1 controllers arrive read-only: mount each again read-write with its own options, so
# that dockerd can make cgroups for the containers it runs.
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
    mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
    while read -r _ dir type opts _; do
        [ "$type" = cgroup ] || continue
        opts=$(tr , '\n' <<<"$opts" | grep -vxE 'ro|rw' | paste -sd,)
        umount "$dir" && mount -t cgroup -o "rw,$opts" cgroup "$dir" ||
            die "cannot remount $dir read-write"
    done < <(grep ' cgroup ' /proc/mounts)
fi

# cgroup v2 (GitHub's runners): move this shell out of the root cgroup and hand the
# controllers down, as Docker's own dind script does, so dockerd can make child cgroups.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true
    sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers \
        >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
fi

mkdir -p /run/sshd
chmod 0600 /etc/ssh/ssh_host_ed25519_key
/usr/sbin/sshd -o HostKey=/etc/ssh/ssh_host_ed25519_key -o PasswordAuthentication=no \
    -o PermitRootLogin=prohibit-password || die "sshd did not start"

exec dockerd --host unix:///var/run/docker.sock --host tcp://0.0.0.0:2376 \
    --tlsverify --tlscacert /etc/lab/tls/ca.pem --tlscert /etc/lab/tls/cert.pem \
    --tlskey /etc/lab/tls/key.pem --mtu 1400 --storage-driver overlay2 \
    --cgroup-parent "/${LAB_CGROUP:?LAB_CGROUP is not set}"
