#!/usr/bin/env bash
# Prepare the Docker sandbox on a fresh Debian bookworm CI machine (run as root; idempotent).
#
# 1. install Debian's docker.io, debootstrap, bubblewrap and pypy3 (skipped when already installed);
# 2. start dockerd in the background unless an engine already answers: overlay2 first, vfs as the
#    fallback (vfs works everywhere but makes a cold container start ~10x slower);
# 3. build the sandbox image offline (debootstrap rootfs + `docker import` + host-downloaded numpy
#    wheels installed with --no-index): no container registry is reachable in CI.
#
# Environment: PYTHON (default python3), AUTOTTS_DEBIAN_MIRROR (default: the mirror apt uses),
# AUTOTTS_DOCKERD_LOG (default /var/log/autotts-dockerd.log).
set -euo pipefail

PYTHON="${PYTHON:-python3}"
LOG="${AUTOTTS_DOCKERD_LOG:-/var/log/autotts-dockerd.log}"

need=()
for pkg in docker.io debootstrap bubblewrap pypy3; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "sandbox-setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

engine_answers() { timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start_dockerd() {  # $1 = storage driver; returns 0 once the engine answers
    echo "sandbox-setup: starting dockerd (storage driver $1), log in $LOG"
    # No iptables/bridge: the sandbox uses --network none only, and these are what work on CI hosts.
    nohup dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver="$1" \
        >>"$LOG" 2>&1 </dev/null &
    echo $! >/run/autotts-dockerd.pid
    for _ in $(seq 1 60); do
        if engine_answers; then return 0; fi
        if ! kill -0 "$(cat /run/autotts-dockerd.pid)" 2>/dev/null; then return 1; fi
        sleep 0.5
    done
    kill "$(cat /run/autotts-dockerd.pid)" 2>/dev/null || true
    return 1
}

if engine_answers; then
    echo "sandbox-setup: a Docker engine already answers"
else
    # A stale pid file from an engine that died would make the next dockerd refuse to start.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    if ! start_dockerd overlay2; then
        echo "sandbox-setup: overlay2 failed (see $LOG); falling back to vfs (slow cold starts)"
        sleep 1
        rm -f /var/run/docker.pid
        start_dockerd vfs || { echo "sandbox-setup: dockerd did not start; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
    fi
fi
echo "sandbox-setup: storage driver $(docker info --format '{{.Driver}}')"

"$PYTHON" -m autotts_graph.sandbox.image.build --offline
