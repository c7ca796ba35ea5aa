#!/usr/bin/env bash
# Provisions what the tests need (PostgreSQL, MNIST), runs every test of the solution, stops what it started.
# Extra arguments go to `dotnet test` (e.g. --filter "FullyQualifiedName~Surgery").
set -euo pipefail
source "$(dirname "$0")/lib/provision.sh"
cd "$ROOT"

ensure_prerequisites
ensure_mnist
trap stop_postgres EXIT
# Tests use their own cluster so they can run beside a service started by run.sh; durability is not needed.
PG_FSYNC=off start_postgres "$(postgres_dir postgres-test)"
export SURGERY_MNIST_DIR="$MNIST_DIR"

dotnet build SurgeryService.sln -c Release -nologo -v quiet
LOG="$DATA_DIR/test-output.log"
status=0
dotnet test SurgeryService.sln -c Release --no-build -nologo --logger "console;verbosity=normal" "$@" 2>&1 | tee "$LOG" || status=$?
# One summary line over all test projects.
awk '/^ +Passed: +[0-9]+/ { p += $2 } /^ +Failed: +[0-9]+/ { f += $2 } /^ +Skipped: +[0-9]+/ { s += $2 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$LOG"
exit "$status"
