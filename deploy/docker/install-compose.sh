#!/usr/bin/env bash
# Makes `docker compose` available so tests can check docker-compose.yml with
# `docker compose config` (no Docker engine needed). When the docker CLI has no
# compose plugin, builds Docker Compose v2 from the Go module proxy (a few minutes
# the first time, cached after) and installs it as a CLI plugin. Prints the
# command to use: "docker compose" or the path of the standalone binary.
set -euo pipefail
VERSION=v2.29.7
CACHE=${JOURNEY_CACHE_DIR:-$HOME/.cache/journey-engine}/compose-$VERSION
PLUGIN_DIR=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins

if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  echo "docker compose"
  exit 0
fi
if [ ! -x "$CACHE/docker-compose" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "install-compose: neither a docker compose plugin nor Go to build one" >&2
    exit 1
  fi
  echo "install-compose: building Docker Compose $VERSION (first time only)" >&2
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install "github.com/docker/compose/v2/cmd@$VERSION" >&2
  mkdir -p "$CACHE"
  mv "$tmp/cmd" "$CACHE/docker-compose"
  rmdir "$tmp"
fi
if command -v docker >/dev/null 2>&1; then
  mkdir -p "$PLUGIN_DIR"
  ln -sf "$CACHE/docker-compose" "$PLUGIN_DIR/docker-compose"
  if docker compose version >/dev/null 2>&1; then
    echo "docker compose"
    exit 0
  fi
fi
echo "$CACHE/docker-compose"
