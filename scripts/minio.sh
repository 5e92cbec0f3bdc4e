#!/usr/bin/env bash
# MinIO for tests and local experiments: the pinned server, built once into
# a cache, started on free loopback ports, stopped by PID.
#
#   scripts/minio.sh install        build the pinned MinIO into the cache
#                                   (skipped when it is already there) and
#                                   print the binary's path
#   scripts/minio.sh start N DIR    start N servers on free 127.0.0.1 ports,
#                                   data, logs and PID files under DIR/minio-<i>/;
#                                   print "minio-<i> <endpoint>" per server
#   scripts/minio.sh stop DIR       stop the servers started under DIR
#
# Both start and stop are idempotent: start reuses servers of DIR that are
# still running (and restarts stopped ones on their old port and data), stop
# does nothing when nothing runs.
#
# Environment:
#   VAULTBAK_TOOLS       cache dir (default ~/.cache/vaultbak-tools); the
#                        binary lives in its bin/
#   VAULTBAK_MINIO       MinIO binary to start instead of the cached one
#   MINIO_ROOT_USER      access key    (default vaultbak)
#   MINIO_ROOT_PASSWORD  secret key    (default vaultbak-secret, >= 8 chars)
#   MINIO_MEMLIMIT       memory limit per server (default 512MiB)
#
# The Go tests use backend/s3/s3test, which starts MinIO the same way.
set -euo pipefail

MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

TOOLS=${VAULTBAK_TOOLS:-$HOME/.cache/vaultbak-tools}
CACHED_BIN=$TOOLS/bin/minio

die() {
  echo "minio.sh: $*" >&2
  exit 1
}

usage() {
  cat >&2 <<EOF
usage: scripts/minio.sh install
       scripts/minio.sh start N DIR
       scripts/minio.sh stop DIR
EOF
  exit 2
}

# pinned reports whether $1 was built from the pinned MinIO module version.
pinned() {
  go version -m "$1" 2>/dev/null | awk -v m="$MINIO_MODULE" -v v="$MINIO_VERSION" \
    '$1 == "mod" && $2 == m && $3 == v { found = 1 } END { exit !found }'
}

cmd_install() {
  [ $# -eq 0 ] || usage
  command -v go >/dev/null || die "go is not on PATH; it is needed to build MinIO"
  mkdir -p "$TOOLS/bin"
  # One install at a time: a second caller waits and then finds the binary.
  exec 9>"$TOOLS/.minio-install.lock"
  flock 9
  if [ -x "$CACHED_BIN" ]; then
    if pinned "$CACHED_BIN"; then
      echo "$CACHED_BIN"
      return
    fi
    echo "minio.sh: $CACHED_BIN is not MinIO $MINIO_VERSION; rebuilding" >&2
  fi
  echo "minio.sh: building MinIO $MINIO_VERSION into $TOOLS/bin (a few minutes, once)" >&2
  # Outside any module, so the project's go.mod and GOFLAGS play no part.
  if ! (cd "$TOOLS" && GOFLAGS='' GOBIN="$TOOLS/bin" go install "$MINIO_MODULE@$MINIO_VERSION"); then
    die "go install $MINIO_MODULE@$MINIO_VERSION failed"
  fi
  [ -x "$CACHED_BIN" ] || die "go install succeeded but $CACHED_BIN is missing"
  echo "$CACHED_BIN"
}

minio_bin() {
  local bin=${VAULTBAK_MINIO:-$CACHED_BIN}
  [ -x "$bin" ] || die "no MinIO binary at $bin; run scripts/minio.sh install (or set VAULTBAK_MINIO)"
  echo "$bin"
}

# alive reports whether process $1 exists and is not a zombie (an exited
# child nobody has reaped yet, as under a container's init that does not).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

# running_pid prints the PID recorded in $1/pid when that process is alive
# and is a MinIO server (a recycled PID belongs to someone else).
running_pid() {
  local pidfile=$1/pid pid
  [ -f "$pidfile" ] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$1/data" || return 1
  echo "$pid"
}

port_in_use() {
  [ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
}

# free_port picks a port outside the kernel's ephemeral range that nothing
# listens on. A race with another process is caught by start_one's retry.
free_port() {
  local port i
  for i in $(seq 1 100); do
    port=$((20000 + RANDOM % 12000))
    if ! port_in_use "$port"; then
      echo "$port"
      return
    fi
  done
  die "found no free port"
}

# health reports whether the server on port $1 serves S3 requests: live,
# and past initialisation (a live server may still answer "Server not
# initialized yet"; the cluster check waits for its object layer and IAM).
health() {
  local headers
  headers=$(curl -fsS -D - -o /dev/null --max-time 2 "http://127.0.0.1:$1/minio/health/live" 2>/dev/null) || return 1
  ! grep -qi '^x-minio-server-status:' <<<"$headers" || return 1
  curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/minio/health/cluster" 2>/dev/null
}

# start_one starts the server in $2 (on port $3 when given) and waits until
# it is live. Returns 3 when the port was taken meanwhile.
start_one() {
  local bin=$1 sdir=$2 port=$3 pid i
  mkdir -p "$sdir/data" "$sdir/certs"
  echo "$port" >"$sdir/port"
  echo "--- $(date -u +%FT%TZ) starting on 127.0.0.1:$port" >>"$sdir/log"
  # A background job of a script ignores the terminal's ^C and outlives it.
  MINIO_ROOT_USER=$ACCESS_KEY MINIO_ROOT_PASSWORD=$SECRET_KEY \
    MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=1 \
    MINIO_MEMLIMIT=${MINIO_MEMLIMIT:-512MiB} \
    "$bin" server --address "127.0.0.1:$port" --certs-dir "$sdir/certs" \
    --quiet --anonymous "$sdir/data" </dev/null >>"$sdir/log" 2>&1 &
  pid=$!
  echo "$pid" >"$sdir/pid"
  for i in $(seq 1 300); do # 30 s
    if health "$port"; then
      return 0
    fi
    if ! alive "$pid"; then
      rm -f "$sdir/pid"
      if tail -n 20 "$sdir/log" | grep -qi "address already in use"; then
        return 3
      fi
      echo "minio.sh: MinIO in $sdir exited during startup; its log:" >&2
      tail -n 40 "$sdir/log" >&2
      exit 1
    fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$sdir/pid"
  echo "minio.sh: MinIO in $sdir not live after 30 s; its log:" >&2
  tail -n 40 "$sdir/log" >&2
  exit 1
}

cmd_start() {
  [ $# -eq 2 ] || usage
  local n=$1 dir=$2 bin i sdir port pid rc attempt
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "start: N must be a positive number, got '$n'"
  ACCESS_KEY=${MINIO_ROOT_USER:-vaultbak}
  SECRET_KEY=${MINIO_ROOT_PASSWORD:-vaultbak-secret}
  [ ${#ACCESS_KEY} -ge 3 ] || die "MINIO_ROOT_USER must have at least 3 characters"
  [ ${#SECRET_KEY} -ge 8 ] || die "MINIO_ROOT_PASSWORD must have at least 8 characters"
  command -v curl >/dev/null || die "curl is needed to check that MinIO is live"
  bin=$(minio_bin)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  for i in $(seq 1 "$n"); do
    sdir=$dir/minio-$i
    port=
    if [ -f "$sdir/port" ]; then
      port=$(<"$sdir/port")
    fi
    if pid=$(running_pid "$sdir"); then
      # Already running (perhaps still starting): never a second server
      # on the same data.
      for attempt in $(seq 1 300); do
        health "$port" && break
        [ "$attempt" -lt 300 ] || die "minio-$i (pid $pid) runs but is not live on port $port; see $sdir/log, or run scripts/minio.sh stop $dir"
        sleep 0.1
      done
      echo "minio-$i http://127.0.0.1:$port"
      continue
    fi
    # Not running: restart on the old port if it is free, else a new one.
    if [ -z "$port" ] || port_in_use "$port"; then
      port=$(free_port)
    fi
    for attempt in 1 2 3 4 5; do
      rc=0
      start_one "$bin" "$sdir" "$port" || rc=$?
      [ "$rc" -eq 0 ] && break
      [ "$attempt" -lt 5 ] || die "minio-$i: no free port after 5 attempts"
      port=$(free_port)
    done
    echo "minio-$i http://127.0.0.1:$port"
  done
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir=$1 sdir pid i stopped=0
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  for sdir in "$dir"/minio-*; do
    [ -d "$sdir" ] || continue
    if pid=$(running_pid "$sdir"); then
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 100); do # 10 s, then SIGKILL
        alive "$pid" || break
        sleep 0.1
      done
      if alive "$pid"; then
        echo "minio.sh: $(basename "$sdir") (pid $pid) ignored SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
      stopped=$((stopped + 1))
    fi
    rm -f "$sdir/pid"
  done
  echo "minio.sh: stopped $stopped server(s) under $dir" >&2
}

[ $# -ge 1 ] || usage
command=$1
shift
case $command in
install) cmd_install "$@" ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
*) usage ;;
esac
