#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, idempotently:
# system packages (JDK, Maven, redis-server, prometheus for promtool), the Python
# virtualenv with the project and its dev tools, the Apache Kafka broker jars
# (Maven Central, cached) and the docker compose CLI plugin used to check
# docker-compose.yml (no Docker engine needed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
log() { printf '[bootstrap] %s\n' "$*" >&2; }

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing system packages: ${need_apt[*]}; install them (sudo apt-get install -y ${need_apt[*]}) and run again"
    exit 1
  fi
  log "installing ${need_apt[*]} with apt-get"
  # The Debian packages of redis-server and prometheus would start system services
  # (ports 6379 and 9090); the project starts its own servers, so keep them off.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if [ "$made_policy" = 1 ]; then rm -f "$policy"; trap - EXIT; fi
  if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
    service prometheus stop >/dev/null 2>&1 || true
  fi
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.journey-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  log "installing the project and its dev tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  touch "$stamp"
fi

log "resolving the Apache Kafka broker"
bash deploy/kafka/fetch.sh >/dev/null

if [ "${1:-}" = "--test" ]; then
  bash deploy/docker/install-compose.sh >/dev/null
fi
log "ready ($ROOT)"
