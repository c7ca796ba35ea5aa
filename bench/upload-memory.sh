#!/usr/bin/env bash
# Issue 16: the Api's peak resident memory while it refuses decompression bombs and accepts a 1 MB and a 300 MB ONNX model;
# issue 27: while it refuses a 25 MB settings body, and its CPU time while it serves 8 events (SSE) streams.
# Starts a private PostgreSQL and the Api (Release build) on loopback, runs `bench upload-memory`, stops both.
# Needs Linux (/proc/PID/clear_refs) and the right to write it (the Api runs as the same user). Prints; asserts nothing.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/provision.sh"
cd "$ROOT"

ensure_prerequisites
dotnet build SurgeryService.sln -c Release -nologo -v quiet
API_PID=""
cleanup() { [ -n "$API_PID" ] && kill "$API_PID" 2>/dev/null; wait "$API_PID" 2>/dev/null || true; stop_postgres; }
trap cleanup EXIT
start_postgres "$DATA_DIR/postgres-bench"

PORT="$(free_port 5180)"
KEY="bench-key-0123456789abcdef"
Tenants__bench__ApiKeys__0="$KEY" Datasets__MnistDirectory="" ASPNETCORE_URLS="http://127.0.0.1:$PORT" \
  Logging__LogLevel__Default=Warning \
  dotnet src/Api/bin/Release/net10.0/SurgeryService.Api.dll >"$DATA_DIR/upload-memory-api.log" 2>&1 &
API_PID=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break
  sleep 0.5
done
dotnet bench/bin/Release/net10.0/SurgeryService.Bench.dll upload-memory --url "http://127.0.0.1:$PORT" --key "$KEY" --pid "$API_PID" "$@"
