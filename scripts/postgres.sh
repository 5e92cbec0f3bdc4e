#!/usr/bin/env bash
# PostgreSQL for tests and local experiments: Debian's server, installed
# once, and throwaway clusters started on a free loopback port, stopped by
# their PID file.
#
#   scripts/postgres.sh install     install Debian's postgresql when pg_ctl
#                                   or initdb is missing (apt-get; no cluster
#                                   is created, no service started) and
#                                   print the directory of its binaries
#   scripts/postgres.sh start DIR   initdb a throwaway cluster in DIR/data
#                                   (unless there is one) and start it on a
#                                   free 127.0.0.1 port, unix socket in
#                                   DIR/socket, trust authentication, log in
#                                   DIR/log; print PGHOST=, PGPORT=, PGUSER=
#                                   and PGBIN= lines once it accepts
#                                   connections
#   scripts/postgres.sh stop DIR    stop the cluster of DIR (pg_ctl stop -m
#                                   fast)
#
# start and stop are idempotent: start reuses a cluster of DIR that is
# still running, stop does nothing when none runs.
#
# PostgreSQL refuses to run as root. Run as root, the cluster belongs to
# the "postgres" system user (created by the package, or here when it is
# missing) and DIR is chowned to it; every directory above DIR must let
# that user through (mode o+x). Run as anyone else, the cluster is theirs.
#
# The cluster is for tests: fsync, synchronous_commit and full_page_writes
# are off, so a crash of the machine may lose it. Never point DIR at data
# you keep.
#
# Environment:
#   VAULTBAK_PG_BIN   directory of pg_ctl/initdb to use instead of the
#                     newest /usr/lib/postgresql/*/bin
#   VAULTBAK_PG_USER  system user that runs the cluster when started as
#                     root (default postgres)
set -euo pipefail

RUN_USER=${VAULTBAK_PG_USER:-postgres}
DB_SUPERUSER=postgres # the cluster's superuser role, whoever runs it

die() {
  echo "postgres.sh: $*" >&2
  exit 1
}

usage() {
  cat >&2 <<EOF
usage: scripts/postgres.sh install
       scripts/postgres.sh start DIR
       scripts/postgres.sh stop DIR
EOF
  exit 2
}

# pg_bin prints the directory holding pg_ctl and initdb, or fails.
pg_bin() {
  local d
  if [ -n "${VAULTBAK_PG_BIN:-}" ]; then
    if [ ! -x "$VAULTBAK_PG_BIN/pg_ctl" ] || [ ! -x "$VAULTBAK_PG_BIN/initdb" ]; then
      die "VAULTBAK_PG_BIN=$VAULTBAK_PG_BIN has no pg_ctl and initdb"
    fi
    echo "$VAULTBAK_PG_BIN"
    return
  fi
  # The newest major version first.
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5nr); do
    if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then
      echo "$d"
      return
    fi
  done
  return 1
}

cmd_install() {
  [ $# -eq 0 ] || usage
  local bin
  if bin=$(pg_bin); then
    echo "$bin"
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
  command -v apt-get >/dev/null || die "PostgreSQL is not installed and there is no apt-get to install it"
  # Tell postgresql-common not to create (and so not to start) the default
  # cluster: tests make their own.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/vaultbak-tests.conf
  echo "postgres.sh: installing Debian's postgresql (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    postgresql postgresql-client >&2 || die "apt-get install postgresql failed"
  bin=$(pg_bin) || die "postgresql installed, but no pg_ctl/initdb under /usr/lib/postgresql/*/bin"
  echo "$bin"
}

# as_owner runs a command as the user that owns the cluster.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$RUN_USER" -- "$@"
  else
    "$@"
  fi
}

# ensure_user creates the run user when started as root and it is missing.
ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id -u "$RUN_USER" >/dev/null 2>&1 && return 0
  echo "postgres.sh: creating system user $RUN_USER" >&2
  useradd --system --user-group --home-dir /nonexistent --no-create-home \
    --shell /usr/sbin/nologin "$RUN_USER" || die "useradd $RUN_USER failed"
}

port_in_use() {
  [ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
}

# free_port picks a port outside the kernel's ephemeral range that nothing
# listens on. A race with another process is caught by start's retry.
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 12000))
    if ! port_in_use "$port"; then
      echo "$port"
      return
    fi
  done
  die "found no free port"
}

# postmaster_alive reports whether the PID in DIR's postmaster.pid is a
# live process (a zombie left by a killed server is not: pg_ctl, which
# only sends it signal 0, would take it for running).
postmaster_alive() {
  local pidfile=$1/data/postmaster.pid pid state
  [ -f "$pidfile" ] || return 1
  pid=$(head -n 1 "$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
  [ "$state" != Z ]
}

# running_port prints the port of the cluster in DIR when it runs and
# accepts connections.
running_port() {
  local dir=$1 bin=$2 port
  postmaster_alive "$dir" || return 1
  # postmaster.pid: line 4 is the port.
  port=$(sed -n 4p "$dir/data/postmaster.pid")
  [[ $port =~ ^[0-9]+$ ]] || return 1
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$DB_SUPERUSER" -t 5 || return 1
  echo "$port"
}

print_env() {
  echo "PGHOST=127.0.0.1"
  echo "PGPORT=$1"
  echo "PGUSER=$DB_SUPERUSER"
  echo "PGBIN=$2"
}

cmd_start() {
  [ $# -eq 1 ] || usage
  local dir=$1 bin port attempt rc
  bin=$(pg_bin) || die "PostgreSQL is not installed; run scripts/postgres.sh install"
  ensure_user
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # The unix socket path must fit in sun_path (107 bytes).
  [ $((${#dir} + 25)) -le 107 ] || die "DIR $dir is too long for a unix socket path"
  if [ "$(id -u)" -eq 0 ]; then
    chown "$RUN_USER:" "$dir"
    chmod 0700 "$dir"
    runuser -u "$RUN_USER" -- test -w "$dir" ||
      die "user $RUN_USER cannot reach $dir: every directory above it needs o+x"
  fi
  if port=$(running_port "$dir" "$bin"); then
    print_env "$port" "$bin"
    return
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    if [ -d "$dir/data" ] && [ -n "$(ls -A "$dir/data")" ]; then
      die "$dir/data is not empty but holds no cluster; remove it"
    fi
    as_owner mkdir -p "$dir/data" "$dir/socket"
    as_owner "$bin/initdb" -D "$dir/data" -U "$DB_SUPERUSER" --auth=trust \
      --encoding=UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 || {
      echo "postgres.sh: initdb failed; its output:" >&2
      tail -n 40 "$dir/initdb.log" >&2
      exit 1
    }
    as_owner tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF

# scripts/postgres.sh: a throwaway test cluster, loopback only.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/socket'
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 2GB
log_min_messages = warning
EOF
  fi
  as_owner mkdir -p "$dir/socket"
  # A server killed with SIGKILL leaves its PID file behind, and where
  # nothing reaps the dead process, PostgreSQL takes the zombie for a
  # server still running.
  if [ -f "$dir/data/postmaster.pid" ] && ! postmaster_alive "$dir"; then
    rm -f "$dir/data/postmaster.pid"
  fi
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    rc=0
    as_owner "$bin/pg_ctl" start -D "$dir/data" -l "$dir/log" -w -t 60 \
      -o "-p $port" >/dev/null || rc=$?
    if [ "$rc" -eq 0 ]; then
      break
    fi
    if tail -n 20 "$dir/log" 2>/dev/null | grep -qi "address already in use"; then
      [ "$attempt" -lt 5 ] || die "no free port after 5 attempts"
      continue
    fi
    echo "postgres.sh: the cluster in $dir did not start; its log:" >&2
    tail -n 40 "$dir/log" >&2 || true
    exit 1
  done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$DB_SUPERUSER" -t 30 ||
    die "the cluster in $dir started but does not accept connections on 127.0.0.1:$port"
  print_env "$port" "$bin"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir=$1 bin
  [ -f "$dir/data/postmaster.pid" ] || return 0
  bin=$(pg_bin) || die "PostgreSQL is not installed"
  dir=$(cd "$dir" && pwd)
  postmaster_alive "$dir" || return 0
  if ! as_owner "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 30 >/dev/null; then
    if postmaster_alive "$dir"; then
      echo "postgres.sh: fast shutdown of $dir timed out; stopping it immediately" >&2
      as_owner "$bin/pg_ctl" stop -D "$dir/data" -m immediate -w -t 30 >/dev/null
    fi
  fi
  echo "postgres.sh: stopped the cluster in $dir" >&2
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
