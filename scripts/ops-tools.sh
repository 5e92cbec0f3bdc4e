#!/usr/bin/env bash
# The tools that check the operations examples (examples/): promtool, to
# check the Prometheus alert rules, and systemd-analyze, to verify the
# systemd units. e2e/examples_test.go needs both and fails without them.
#
#   scripts/ops-tools.sh install    install what is missing with apt-get
#                                   (Debian's prometheus for promtool,
#                                   systemd for systemd-analyze); reuse
#                                   what is already on PATH
#
# apt-get installs the prometheus package without starting its service
# (policy-rc.d denies it for the duration), so the test machine runs no
# Prometheus server.
set -euo pipefail

die() {
  echo "ops-tools.sh: $*" >&2
  exit 1
}

[ "${1:-}" = install ] || { echo "usage: scripts/ops-tools.sh install" >&2; exit 2; }

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "need root (or sudo) to apt-get install ${missing[*]}"
  sudo=(sudo)
fi

# Keep the package's service from starting while it installs.
policy=/usr/sbin/policy-rc.d
placed_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 0755 "$policy"
  placed_policy=1
fi
cleanup() {
  if [ -n "$placed_policy" ]; then "${sudo[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT

echo "ops-tools.sh: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

command -v promtool >/dev/null || die "promtool still missing after installing prometheus"
command -v systemd-analyze >/dev/null || die "systemd-analyze still missing after installing systemd"
