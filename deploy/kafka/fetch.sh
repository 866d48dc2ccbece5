#!/usr/bin/env bash
# Resolves the Apache Kafka broker jars (and their runtime dependencies) from
# Maven Central into a local cache, using deploy/kafka/pom.xml.
#
#   ${JOURNEY_CACHE_DIR:-$HOME/.cache/journey-engine}/kafka-<version>/libs
#
# Idempotent: a marker file records a complete download; a half download lives
# in a temp dir and is never mistaken for a complete one. The only line written
# to stdout is the libs directory; all logging goes to stderr.
set -euo pipefail

log() { printf '[kafka/fetch] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/pom.xml"
[[ -f "$pom" ]] || die "missing $pom"

version="$(sed -n 's:.*<kafka\.version>[[:space:]]*\([^<[:space:]]*\)[[:space:]]*</kafka\.version>.*:\1:p' "$pom" | head -n1)"
[[ -n "$version" ]] || die "could not read <kafka.version> from $pom"

cache_root="${JOURNEY_CACHE_DIR:-$HOME/.cache/journey-engine}"
dest="$cache_root/kafka-$version"
libs="$dest/libs"
marker="$dest/.complete"

is_complete() {
    [[ -f "$marker" && -d "$libs" ]] && compgen -G "$libs/kafka_2.13-$version.jar" >/dev/null
}

# Fast path: already fetched (and java present, since the caller will run it).
if is_complete && command -v java >/dev/null 2>&1; then
    printf '%s\n' "$libs"
    exit 0
fi

ensure_tools() {
    local missing=()
    command -v mvn >/dev/null 2>&1 || missing+=(mvn)
    command -v java >/dev/null 2>&1 || missing+=(java)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ "$(id -u)" -ne 0 ]]; then
        die "${missing[*]} not found on PATH and not running as root; install Maven and a Java 17+ runtime (e.g. 'sudo apt-get install -y maven default-jre-headless')"
    fi
    command -v apt-get >/dev/null 2>&1 || die "${missing[*]} not found and apt-get is unavailable; install Maven and Java 17+ manually"
    log "installing ${missing[*]} with apt-get (maven default-jre-headless)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends maven default-jre-headless >&2
    command -v mvn >/dev/null 2>&1 || die "apt-get finished but mvn is still missing"
    command -v java >/dev/null 2>&1 || die "apt-get finished but java is still missing"
}

mkdir -p "$cache_root"

# Serialise concurrent fetches (e.g. parallel test runs) when flock is available.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache_root/.kafka-$version.lock"
    flock 9
fi

ensure_tools

if is_complete; then
    printf '%s\n' "$libs"
    exit 0
fi

tmp="$(mktemp -d "$cache_root/.kafka-$version.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

log "resolving kafka_2.13 $version runtime jars with Maven (first run downloads ~50 MB)"
start=$SECONDS
# mvn writes its (quiet) output to stdout; keep stdout clean for the caller and
# strip the stray ANSI reset codes Maven 3.8 emits even in batch mode.
if ! mvn -q -B -ntp -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime \
    -DoutputDirectory="$tmp/libs" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2; then
    die "mvn dependency:copy-dependencies failed (see messages above)"
fi

[[ -f "$tmp/libs/kafka_2.13-$version.jar" ]] || die "Maven finished but kafka_2.13-$version.jar is not in $tmp/libs"

rm -rf "$dest"
mkdir -p "$dest"
mv "$tmp/libs" "$libs"
count="$(find "$libs" -maxdepth 1 -name '*.jar' | wc -l)"
size="$(du -sh "$libs" | cut -f1)"
printf 'kafka_2.13 %s: %s jars, %s, fetched in %ss\n' "$version" "$count" "$size" "$((SECONDS - start))" >"$marker"
log "fetched $count jars ($size) in $((SECONDS - start))s into $libs"

printf '%s\n' "$libs"
