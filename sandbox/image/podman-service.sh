#!/bin/sh
# Start a Docker-API-compatible engine for the Docker sandbox backend on a host without Docker:
# Debian's podman with runc, serving the Docker API on a unix socket (see ../../../shared/STACK-NOTES.md
# "Isolation on this machine"), then build the sandbox image. Idempotent: an engine already answering on
# the socket is reused and an up-to-date image is not rebuilt.
# Prints the DOCKER host URL on its last line: unix://$DIR/podman.sock
set -eu
DIR=${DISCO_PODMAN_DIR:-/run/disco-podman}
SOCK="$DIR/podman.sock"
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-python3}

need=""
for bin in podman runc bwrap; do command -v "$bin" >/dev/null 2>&1 || need="$need $bin"; done
if [ -n "$need" ]; then
    [ "$(id -u)" = 0 ] || { echo "podman/runc/bubblewrap missing and not root: install podman runc bubblewrap" >&2; exit 1; }
    echo "installing podman runc bubblewrap" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc bubblewrap >&2
fi

mkdir -p "$DIR"
cat > "$DIR/containers.conf" <<CONF
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
CONF
export CONTAINERS_CONF="$DIR/containers.conf"

answering() {  # the socket accepts a connection (no curl needed)
    "$PY" -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1])" "$SOCK" 2>/dev/null
}
if ! answering; then
    rm -f "$SOCK"
    # From /: the engine's conmon needs its working directory to exist for every container it starts, and
    # the caller's (a CI clone) may be deleted while the engine lives on.
    (cd / && exec nohup podman system service --time=0 "unix://$SOCK" >"$DIR/service.log" 2>&1) &
    echo $! >"$DIR/service.pid"
    i=0
    until answering; do
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "podman service did not start; see $DIR/service.log" >&2; exit 1; }
        sleep 0.1
    done
fi
"$PY" "$HERE/build.py" >&2
echo "unix://$SOCK"
