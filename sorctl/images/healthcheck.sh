#!/bin/bash
# HEALTHCHECK: the role's TCP port is listening on the address the entrypoint bound.
# node 9701, scheduler 9702 (SharedJobCluster clients), relay 9701 (its TCP relay port);
# router and client run no daemon: healthy while the container runs. Reads /proc/net/tcp
# instead of connecting, because every probe connection makes dispy log "invalid request".
set -u
case ${SORCTL_ROLE:-} in
node | relay) port=9701 ;;
scheduler) port=9702 ;;
*) exit 0 ;;
esac
host=$(cat /run/sorctl-host 2>/dev/null) || exit 1
IFS=. read -r a b c d <<<"$host"
# /proc/net/tcp: local address as little-endian hex IPv4 ":" hex port; state 0A is LISTEN.
want=$(printf '%02X%02X%02X%02X:%04X' "$d" "$c" "$b" "$a" "$port")
any=$(printf '00000000:%04X' "$port")
while read -r _ local _ state _; do
    if [ "$state" = 0A ] && { [ "$local" = "$want" ] || [ "$local" = "$any" ]; }; then exit 0; fi
done </proc/net/tcp
echo "nothing listens on $host:$port" >&2
exit 1
