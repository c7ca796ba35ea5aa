#!/usr/bin/env bash
# Proves that provisioning works from a checkout in a private (0700) folder, as in root's home or `mktemp -d`: copies
# scripts/ (all that provisioning reads) into such a folder, starts and queries a private cluster from there, stops it
# and removes what it made. Fast (a few seconds); .ci/run runs it before the tests.
set -euo pipefail
SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
PRIVATE="$(mktemp -d)"
chmod 700 "$PRIVATE"
mkdir "$PRIVATE/clone"
cp -r "$SOURCE/scripts" "$PRIVATE/clone/"
cleanup() {
  stop_postgres || true
  [ -n "${CLUSTER:-}" ] && rm -rf "$CLUSTER"
  [ -n "${CLUSTER:-}" ] && rmdir "$(dirname "$CLUSTER")" 2>/dev/null || true
  rm -rf "$PRIVATE"
}
trap cleanup EXIT

source "$PRIVATE/clone/scripts/lib/provision.sh"
[ "$ROOT" = "$PRIVATE/clone" ] || die "provisioning resolved its root to $ROOT, not the private copy"
ensure_postgres_binaries
CLUSTER="$(postgres_dir postgres-private-check)"
log "checkout in $ROOT (mode $(stat -c %a "$PRIVATE")), cluster in $CLUSTER"
PG_FSYNC=off start_postgres "$CLUSTER"
answer="$("${PG_AS[@]}" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc 'select 40 + 2')"
[ "$answer" = 42 ] || die "the private cluster answered '$answer' to select 40 + 2"
log "provisioning from a private folder works"
