#!/usr/bin/env bash
# Ensures `redis-server` is on PATH for the local test/demo/benchmark harness.
# Installs it from Debian apt when missing and running as root; never leaves the
# Debian system service running (it would hold port 6379 and is not ours).
set -euo pipefail

log() { printf '[redis/install] %s\n' "$*" >&2; }

if command -v redis-server >/dev/null 2>&1; then
    log "redis-server already installed: $(command -v redis-server)"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    log "ERROR: redis-server is not on PATH and this is not root, so it cannot be installed."
    log "Install it yourself (e.g. 'sudo apt-get install -y redis-server' or 'brew install redis')."
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "ERROR: redis-server is missing and apt-get is not available; install Redis manually."
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Keep the package's init script from starting the system service during install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
cleanup() { if [[ "$created_policy" -eq 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

log "installing redis-server with apt-get"
apt-get update >&2
apt-get install -y --no-install-recommends redis-server >&2

# Belt and braces: if a service got started anyway, stop and disable it.
service redis-server stop >/dev/null 2>&1 || true
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
update-rc.d redis-server disable >/dev/null 2>&1 || true

if ! command -v redis-server >/dev/null 2>&1; then
    log "ERROR: apt-get finished but redis-server is still not on PATH"
    exit 1
fi
log "installed $(redis-server --version)"
