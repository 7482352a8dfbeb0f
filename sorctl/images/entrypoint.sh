#!/bin/bash
# Entrypoint of every sorctl image; SORCTL_ROLE (set in the image) says which daemon to run.
# Configured only through SORCTL_* environment variables (README, section "Images"). While still
# root it adds SORCTL_ROUTES and makes the TLS files readable, then drops to the user `sorctl`
# and execs the role's daemon with --daemon. Extra arguments are appended to the daemon's flags
# (client: they are the command to run; default: sleep until stopped).
set -euo pipefail
role=${SORCTL_ROLE:?SORCTL_ROLE is not set}
home=/home/sorctl
die() { echo "sorctl-entrypoint ($role): $*" >&2; exit 1; }

# SORCTL_ROUTES: "SUBNET via GATEWAY" pairs joined by commas. Needs NET_ADMIN.
if [ -n "${SORCTL_ROUTES:-}" ]; then
    IFS=, read -ra routes <<<"$SORCTL_ROUTES"
    for route in "${routes[@]}"; do
        read -r subnet via gateway extra <<<"$route" || true
        [ -z "$subnet" ] && continue
        [[ $via == via && -n $gateway && -z ${extra:-} && $subnet$gateway =~ ^[0-9./]+$ ]] ||
            die "bad SORCTL_ROUTES entry '$route' (want 'SUBNET via GATEWAY')"
        ip route replace "$subnet" via "$gateway" || die "cannot add route '$route' (NET_ADMIN?)"
    done
fi

host=${SORCTL_HOST:-$(ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}')}
[ -n "$host" ] || die "no IPv4 address to bind (set SORCTL_HOST)"
# The healthcheck probes the address the daemon binds.
echo "$host" >/run/sorctl-host

# The secret stays out of every environment and command line: the daemon's launcher
# (run-daemon.py) reads it from a copy only the user sorctl can read (the file put into the
# container, or mounted by compose, may belong to root or the host's user).
secret_file=${SORCTL_SECRET_FILE:-/run/sorctl/secret}
if [ -f "$secret_file" ]; then
    install -d -o sorctl -g sorctl -m 0700 "$home/private"
    install -o sorctl -g sorctl -m 0600 "$secret_file" "$home/private/secret" ||
        die "cannot read the secret file $secret_file"
    secret_file=$home/private/secret
elif [ -n "${SORCTL_SECRET_FILE:-}" ]; then
    die "SORCTL_SECRET_FILE=$SORCTL_SECRET_FILE does not exist"
else
    secret_file=
fi
# run_daemon FLAGS SCRIPT: the launcher, told which of the script's flags take the secret.
launcher=/usr/local/lib/sorctl/run-daemon.py
run_daemon() {
    cmd=(python3 "$launcher")
    [ -n "$secret_file" ] && cmd+=(--secret-file "$secret_file" "$1")
    cmd+=("/opt/venv/bin/$2" --daemon)
}

# TLS files may be root-only (0600): give the daemon its own copies.
certfile= keyfile=
if [ -n "${SORCTL_CERTFILE:-}" ]; then
    install -d -o sorctl -g sorctl -m 0700 "$home/tls"
    install -o sorctl -g sorctl -m 0600 "$SORCTL_CERTFILE" "$home/tls/cert.pem" ||
        die "cannot read SORCTL_CERTFILE=$SORCTL_CERTFILE"
    certfile=$home/tls/cert.pem
    if [ -n "${SORCTL_KEYFILE:-}" ]; then
        install -o sorctl -g sorctl -m 0600 "$SORCTL_KEYFILE" "$home/tls/key.pem" ||
            die "cannot read SORCTL_KEYFILE=$SORCTL_KEYFILE"
        keyfile=$home/tls/key.pem
    fi
fi

case $role in
node)
    run_daemon --secret dispynode.py
    cmd+=(--clean -i "$host" --dest_path_prefix "$home/dispynode")
    [ -n "${SORCTL_EXT_HOST:-}" ] && cmd+=(--ext_host "$SORCTL_EXT_HOST")
    [ -n "${SORCTL_CPUS:-}" ] && cmd+=(--cpus "$SORCTL_CPUS")
    [ -n "${SORCTL_SCHEDULER:-}" ] && cmd+=(--scheduler_host "$SORCTL_SCHEDULER")
    [ -n "$certfile" ] && cmd+=(--certfile "$certfile")
    [ -n "$keyfile" ] && cmd+=(--keyfile "$keyfile")
    ;;
scheduler)
    run_daemon --node_secret,--cluster_secret dispyscheduler.py
    cmd+=(--clean -i "$host" --dest_path_prefix "$home/dispyscheduler")
    [ -n "${SORCTL_EXT_HOST:-}" ] && cmd+=(--ext_host "$SORCTL_EXT_HOST")
    for node in ${SORCTL_NODES:-}; do cmd+=(--node "$node"); done
    # A cluster across hosts lists its members in a file that `sorctl scale` rewrites while
    # the scheduler runs: read at every start, so a restarted scheduler pings the members of now.
    nodes_file=/run/sorctl/nodes
    if [ -f "$nodes_file" ]; then
        while read -r node; do
            [ -z "$node" ] && continue
            [[ $node == '*' || $node =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
                die "bad node address '$node' in $nodes_file"
            cmd+=(--node "$node")
        done <"$nodes_file"
    fi
    [ -n "$certfile" ] && cmd+=(--node_certfile "$certfile" --cluster_certfile "$certfile")
    [ -n "$keyfile" ] && cmd+=(--node_keyfile "$keyfile" --cluster_keyfile "$keyfile")
    ;;
relay)
    run_daemon --secret dispynetrelay.py
    cmd+=(-i "$host")
    [ -n "${SORCTL_SCHEDULER:-}" ] && cmd+=(--scheduler_node "$SORCTL_SCHEDULER")
    [ -n "$certfile" ] && cmd+=(--certfile "$certfile")
    [ -n "$keyfile" ] && cmd+=(--keyfile "$keyfile")
    ;;
client | router)
    cmd=()
    ;;
*)
    die "unknown SORCTL_ROLE"
    ;;
esac
if [ ${#cmd[@]} -eq 0 ] && [ $# -eq 0 ]; then
    # Sleep until stopped, and stop at once on SIGTERM (PID 1 has no default handler).
    cmd=(bash -c 'trap "exit 0" TERM INT; while :; do sleep 86400 & wait $!; done')
fi
cmd+=("$@")

export HOME=$home USER=sorctl LOGNAME=sorctl
cd "$home"
exec setpriv --reuid=sorctl --regid=sorctl --init-groups --inh-caps=-all --no-new-privs -- "${cmd[@]}"
