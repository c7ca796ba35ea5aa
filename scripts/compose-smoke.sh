#!/usr/bin/env bash
# Builds the Docker images and walks the README's steps against the containers, the way a user runs them:
# docker-compose up with the Api, PostgreSQL and two CPU workers; upload a small ONNX model and a dataset; queue two
# jobs and see each worker take one; restart PostgreSQL while they run and see both finish; download the results and
# check them against the report; then `down -v`. Each step prints its time; any failure exits non-zero.
#
# It starts a Docker engine if none runs (and stops only that one), installs docker.io and docker-compose with
# apt-get when missing (as root), and makes local base images (docker/local-base/build.sh) when the official ones
# cannot be pulled. HTTP goes to 127.0.0.1 only. Settings (environment):
#   SURGERY_API_PORT      host port of the Api (default: the first free one from 5180)
#   SMOKE_ITERATIONS      iterations of each job (default 20000, checkpoints every 666: 10-20 s of training on a
#                         quiet machine, long enough that both jobs are seen running and postgres restarts mid-job)
#   SMOKE_KEEP=1          leave the stack up at the end (default: down -v, also on failure)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

START=$SECONDS
STEP_START=$SECONDS
step() {
  local now=$SECONDS
  printf '[%s +%4ds] %s\n' "$(date -u +%H:%M:%S)" $((now - START)) "$*"
  STEP_START=$now
}
done_step() { printf '      %s (%ds)\n' "$*" $((SECONDS - STEP_START)); }
fail() { printf '[%s +%4ds] FAILED: %s\n' "$(date -u +%H:%M:%S)" $((SECONDS - START)) "$*" >&2; exit 1; }

export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-surgery-smoke}"
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
ITERATIONS="${SMOKE_ITERATIONS:-20000}"
CHECKPOINT_INTERVAL=$(( ITERATIONS / 30 > 0 ? ITERATIONS / 30 : 1 ))
KEY="smoke-key-$(date +%s)-0123456789"
export SURGERY_API_KEY="$KEY"
WORK="$(mktemp -d)"
STARTED_DOCKERD=""
STACK_UP=""
COMPOSE_FILES=(-f docker-compose.yml)

cleanup() {
  local status=$?
  if [ -n "$STACK_UP" ]; then
    if [ "$status" != 0 ]; then
      echo "---- last container logs ----" >&2
      docker-compose "${COMPOSE_FILES[@]}" logs --no-color --tail=40 >&2 || true
    fi
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then
      echo "stack left up (SMOKE_KEEP=1): docker-compose ${COMPOSE_FILES[*]} -p $COMPOSE_PROJECT_NAME down -v" >&2
    else
      step "docker-compose down -v"
      docker-compose "${COMPOSE_FILES[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
      done_step "stack removed"
    fi
  fi
  if [ -n "$STARTED_DOCKERD" ]; then
    kill "$STARTED_DOCKERD" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 1; done
    echo "stopped the Docker engine this script started (pid $STARTED_DOCKERD)" >&2
  fi
  rm -rf "$WORK"
  [ "$status" = 0 ] && step "smoke run passed in $((SECONDS - START)) s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

apt_install() {
  [ "$(id -u)" = 0 ] || fail "missing $*: install it (apt-get install $*) and run again"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---- the engine ------------------------------------------------------------------------------------------------
step "Docker engine"
command -v docker >/dev/null && command -v docker-compose >/dev/null && command -v curl >/dev/null \
  && command -v jq >/dev/null && command -v python3 >/dev/null \
  || apt_install docker.io docker-compose curl jq python3
if docker info >/dev/null 2>&1; then
  done_step "using the running engine ($(docker info --format '{{.ServerVersion}}'))"
else
  [ -x /usr/sbin/dockerd ] || apt_install docker.io
  /usr/sbin/dockerd --storage-driver="${SMOKE_STORAGE_DRIVER:-overlay2}" > "$WORK/dockerd.log" 2>&1 &
  STARTED_DOCKERD=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log" >&2; fail "dockerd did not come up"; }
  done_step "started dockerd $(docker info --format '{{.ServerVersion}}') (pid $STARTED_DOCKERD)"
fi

# ---- base images ----------------------------------------------------------------------------------------------------
step "base images"
official=(mcr.microsoft.com/dotnet/sdk:10.0 mcr.microsoft.com/dotnet/aspnet:10.0 postgres:15)
have_official=1
for image in "${official[@]}"; do
  docker image inspect "$image" >/dev/null 2>&1 && continue
  if ! timeout 600 docker pull -q "$image" >/dev/null 2>"$WORK/pull.err"; then
    have_official=""
    echo "      cannot pull $image: $(head -c 200 "$WORK/pull.err")"
    break
  fi
done
if [ -n "$have_official" ]; then
  done_step "official images"
else
  ./docker/local-base/build.sh
  COMPOSE_FILES+=(-f docker-compose.local.yml)
  done_step "local stand-ins (docker-compose.local.yml)"
fi
compose() { docker-compose "${COMPOSE_FILES[@]}" "$@"; }

# ---- build and start ------------------------------------------------------------------------------------------------
step "docker-compose build api (the image of the Api and the workers)"
compose build api > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; fail "image build failed"; }
done_step "$(docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' surgery-service:latest)"

if [ -z "${SURGERY_API_PORT:-}" ]; then
  SURGERY_API_PORT=$(python3 -c '
import socket
for port in range(5180, 5280):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port)); print(port); break
        except OSError:
            pass')
fi
export SURGERY_API_PORT
API="http://127.0.0.1:$SURGERY_API_PORT/api"

step "docker-compose up -d --scale worker=2"
STACK_UP=1
compose up -d --no-build --scale worker=2 > "$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "docker-compose up failed"; }
# `up -d` returns once the workers started, which depends_on holds until the Api's health check passes.
api_container=$(compose ps -q api)
[ "$(docker inspect --format '{{.State.Health.Status}}' "$api_container")" = healthy ] || fail "the Api is not healthy"
mapfile -t workers < <(compose ps -q worker)
[ "${#workers[@]}" = 2 ] || fail "expected 2 worker containers, found ${#workers[@]}"
done_step "$(compose ps | tail -n +3 | awk '{print $1}' | paste -sd' ')"

# ---- the README's steps over HTTP ----------------------------------------------------------------------------------
http() { # METHOD PATH [curl args...] -> body on stdout; fails on a status >= 400
  local method=$1 path=$2; shift 2
  curl -sS --max-time 60 -X "$method" -H "X-Api-Key: $KEY" -o "$WORK/body" -w '%{http_code}' "$@" "$API$path" > "$WORK/status" \
    || fail "$method $path: curl failed"
  [ "$(cat "$WORK/status")" -lt 400 ] || fail "$method $path answered $(cat "$WORK/status"): $(head -c 600 "$WORK/body")"
  cat "$WORK/body"
}

step "health and authentication"
curl -fsS --max-time 10 "http://127.0.0.1:$SURGERY_API_PORT/health/ready" >/dev/null || fail "/health/ready"
status=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$API/datasets")
[ "$status" = 401 ] || fail "GET /api/datasets without a key answered $status, expected 401"
done_step "/health/ready 200, no key 401"

step "upload a small ONNX model and a dataset"
python3 scripts/lib/smoke_data.py make "$WORK"
model=$(http POST /models -F "file=@$WORK/mlp.onnx" -F name=mlp-smoke)
dataset=$(http POST /datasets -F "file=@$WORK/blocks.npz" -F name=blocks-smoke)
MODEL=$(jq -r .id <<<"$model")
DATASET=$(jq -r .id <<<"$dataset")
[ "$(jq -r .format <<<"$model")" = onnx ] || fail "model format: $model"
[ "$(jq -r '[.trainCount, .testCount] | join(",")' <<<"$dataset")" = "2000,500" ] || fail "dataset counts: $dataset"
done_step "model $MODEL ($(jq -r .size <<<"$model") bytes), dataset $DATASET (2000 train, 500 test)"

step "queue two jobs ($ITERATIONS iterations each)"
submit() {
  http POST /jobs -H 'Content-Type: application/json' -d @- <<JSON | jq -r .id
{ "modelId": "$MODEL", "datasetId": "$DATASET", "method": "dns", "queue": "cpu", "checkpointInterval": $CHECKPOINT_INTERVAL,
  "settings": { "iterations": $ITERATIONS, "batchSize": 32, "learningRate": 0.01, "evalInterval": $CHECKPOINT_INTERVAL, "seed": $1,
                "layers": [ { "pattern": "fc1", "cRate": 2 }, { "pattern": "fc2", "cRate": 1 } ] } }
JSON
}
JOBS=("$(submit 1)" "$(submit 2)")
for job in "${JOBS[@]}"; do [[ "$job" =~ ^[0-9a-f-]{36}$ ]] || fail "a job was not queued"; done
done_step "jobs ${JOBS[*]}"

job_field() { http GET "/jobs/$1" | jq -r "$2"; }
wait_for() { # DESCRIPTION TIMEOUT_S COMMAND...: polls every second until COMMAND succeeds
  local what=$1 limit=$2 t0=$SECONDS; shift 2
  until "$@"; do
    [ $((SECONDS - t0)) -lt "$limit" ] || fail "timed out after ${limit}s waiting for $what"
    sleep 1
  done
}
both_running() {
  local a b
  a=$(job_field "${JOBS[0]}" '"\(.state) \(.iteration)"'); b=$(job_field "${JOBS[1]}" '"\(.state) \(.iteration)"')
  case "$a$b" in *Failed*|*Cancelled*) fail "a job ended early: $a / $b";; esac
  [[ "$a" == Running* && "$b" == Running* && "${a#* }" -gt 0 && "${b#* }" -gt 0 ]]
}

step "both workers take one job"
wait_for "both jobs running" 300 both_running
# Hangfire records the server (the container's host name, the process id, a guid) that took each job.
server_of() {
  compose exec -T postgres psql -U surgery -d surgery -Atc \
    "select s.data::jsonb->>'ServerId' from hangfire.state s join hangfire.job j on j.id = s.jobid
     where s.name = 'Processing' and j.arguments::text like '%$1%' order by s.id desc limit 1"
}
container_of() { # Hangfire server id -> worker container name
  local host=${1%%:*} c
  for c in "${workers[@]}"; do
    [ "$(docker inspect --format '{{.Config.Hostname}}' "$c")" = "$host" ] && docker inspect --format '{{.Name}}' "$c" | tr -d / && return
  done
  echo "unknown host $host"
}
server_a=$(server_of "${JOBS[0]}"); server_b=$(server_of "${JOBS[1]}")
[ -n "$server_a" ] && [ -n "$server_b" ] || fail "Hangfire has no Processing state for a job"
worker_a=$(container_of "$server_a"); worker_b=$(container_of "$server_b")
[ "$worker_a" != "$worker_b" ] || fail "both jobs ran on $worker_a"
case "$worker_a$worker_b" in *unknown*) fail "a job ran on a server that is not a worker container: $server_a / $server_b";; esac
done_step "${JOBS[0]} on $worker_a, ${JOBS[1]} on $worker_b"

step "restart the postgres container while both jobs run, once each has a checkpoint"
past_checkpoint() {
  local a b
  a=$(job_field "${JOBS[0]}" .checkpointIteration); b=$(job_field "${JOBS[1]}" .checkpointIteration)
  [ "${a:-0}" -gt 0 ] && [ "${b:-0}" -gt 0 ]
}
wait_for "a checkpoint of each job" 600 past_checkpoint
before=$(for job in "${JOBS[@]}"; do job_field "$job" '"\(.state) at iteration \(.iteration) (checkpoint \(.checkpointIteration))"'; done | paste -sd, | sed 's/,/, /')
compose restart postgres > "$WORK/restart.log" 2>&1 || { cat "$WORK/restart.log" >&2; fail "restart postgres failed"; }
wait_for "postgres healthy again" 120 \
  bash -c "[ \"\$(docker inspect --format '{{.State.Health.Status}}' $(compose ps -q postgres))\" = healthy ]"
done_step "the jobs were $before; postgres healthy again"

step "both jobs finish"
finished() {
  local s
  for job in "${JOBS[@]}"; do
    s=$(curl -sS --max-time 30 -H "X-Api-Key: $KEY" "$API/jobs/$job" | jq -r .state 2>/dev/null || echo unreachable)
    case "$s" in Failed|Cancelled) fail "job $job ended $s: $(job_field "$job" .error)";; esac
    [ "$s" = Succeeded ] || return 1
  done
}
wait_for "both jobs to succeed" 2400 finished
for job in "${JOBS[@]}"; do
  echo "      $job: $(job_field "$job" '"\(.state), \(.attempts) attempt(s), resumed from \(.resumedFromIteration // "none"), \(.durationSeconds | floor) s, test top-1 \(.test.top1Before) -> \(.test.top1After), \(.compression * 10 | round / 10)x"')"
done
done_step "both Succeeded"

step "download the results and check them against the report"
for job in "${JOBS[@]}"; do
  report=$(http GET "/jobs/$job/report")
  http GET "/jobs/$job/result?format=onnx" > "$WORK/$job.onnx"
  http GET "/jobs/$job/result?format=onnx-sparse" > "$WORK/$job-sparse.onnx"
  http GET "/jobs/$job/report.svg" > "$WORK/$job.svg"
  grep -q '<svg' "$WORK/$job.svg" || fail "report.svg of $job is not an SVG"
  for role in onnx onnx-sparse; do
    file="$WORK/$job.onnx"; [ "$role" = onnx-sparse ] && file="$WORK/$job-sparse.onnx"
    expected=$(jq -r --arg n "$(basename "$file")" '.files[] | select(.fileName | endswith(if $n | endswith("-sparse.onnx") then "-sparse.onnx" else "dns.onnx" end)) | .sha256' <<<"$report" | head -1)
    actual=$(sha256sum "$file" | cut -d' ' -f1)
    [ "$expected" = "$actual" ] || fail "$job $role: SHA-256 $actual, report says ${expected:-nothing}"
  done
  # The dense download holds W * T with exact zeros: its nonzero weights must be the report's per-layer counts.
  counts=$(python3 scripts/lib/smoke_data.py nonzeros "$WORK/$job.onnx")
  for layer in $(jq -r '.layers[].layer' <<<"$report"); do
    after=$(jq -r --arg l "$layer" '.layers[] | select(.layer == $l) | .after' <<<"$report")
    kept=$(jq -r --arg l "$layer" '[to_entries[] | select(.key | startswith($l + ".")) | .value[0]] | add' <<<"$counts")
    [ "$kept" = "$after" ] || fail "$job $layer: $kept nonzero in the download, the report says $after"
  done
  top1=$(jq -r .accuracy.top1After <<<"$report")
  compression=$(jq -r .totals.compression <<<"$report")
  python3 -c "import sys; sys.exit(0 if $top1 >= 0.9 and $compression > 2 else 1)" \
    || fail "$job: top-1 $top1 and compression $compression, expected >= 0.9 and > 2x on this easy dataset"
  echo "      $job: $(jq -r '[.layers[] | "\(.layer) \(.before) -> \(.after)"] | join(", ")' <<<"$report"); files match the report's SHA-256; top-1 $top1"
done
done_step "results checked"

step "container logs go to stdout"
compose logs --no-color > "$WORK/compose.log" 2>&1
for job in "${JOBS[@]}"; do
  grep -qE "^worker_[0-9]+ +\| +Job $job attempt 1 starts at iteration 0" "$WORK/compose.log" \
    || fail "no start of job $job in the workers' logs"
done
grep -q '^api_1 .*Now listening on: http://0.0.0.0:8080' "$WORK/compose.log" || fail "no start line in the Api's log"
done_step "the Api's start and each job's start are in docker-compose logs ($(wc -l < "$WORK/compose.log") lines)"
