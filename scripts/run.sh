#!/usr/bin/env bash
# Provisions everything on a fresh machine, then runs the Api on http://127.0.0.1:5080 and one Worker.
# Ctrl-C stops the Api, the Worker and PostgreSQL.
set -euo pipefail
source "$(dirname "$0")/lib/provision.sh"
cd "$ROOT"

API_URL="${API_URL:-http://127.0.0.1:5080}"

ensure_prerequisites
ensure_mnist
log "building (Release)"
dotnet build SurgeryService.sln -c Release -nologo -v quiet >&2

PIDS=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_postgres
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_postgres "$(postgres_dir postgres)"
export Datasets__MnistDirectory="$MNIST_DIR"
# One tenant for a local run; set SURGERY_API_KEY (16+ characters) to choose its key.
SURGERY_API_KEY="${SURGERY_API_KEY:-local-dev-key-0123456789}"
export Tenants__local__ApiKeys__0="$SURGERY_API_KEY"
# The only tenant is the operator here: it may view the Hangfire dashboard (read-only), which no tenant opens by default.
export Api__DashboardTenants__0="${Api__DashboardTenants__0:-local}"

# The Api applies the migrations at start; the Worker starts once it is ready.
ASPNETCORE_URLS="$API_URL" dotnet "$ROOT/src/Api/bin/Release/net10.0/SurgeryService.Api.dll" --contentRoot "$ROOT/src/Api/bin/Release/net10.0" &
PIDS+=($!)
for _ in $(seq 1 120); do
  curl -fsS "$API_URL/health/ready" >/dev/null 2>&1 && break
  kill -0 "${PIDS[0]}" 2>/dev/null || die "the Api exited during start"
  sleep 1
done
curl -fsS "$API_URL/health/ready" >/dev/null || die "the Api did not become ready"

dotnet "$ROOT/src/Worker/bin/Release/net10.0/SurgeryService.Worker.dll" --contentRoot "$ROOT/src/Worker/bin/Release/net10.0" &
PIDS+=($!)

cat >&2 <<MSG

  Surgery Service is running.
    API         $API_URL/api
    Swagger UI  $API_URL/swagger
    Health      $API_URL/health/ready
    Hangfire    $API_URL/hangfire  (user: anything, password: the API key)
    API key     $SURGERY_API_KEY  (header X-Api-Key, tenant 'local')
    PostgreSQL  127.0.0.1:$PG_PORT (database surgery, user postgres)
  Press Ctrl-C to stop everything.

MSG
wait -n "${PIDS[@]}"
log "a process exited; stopping the rest"
