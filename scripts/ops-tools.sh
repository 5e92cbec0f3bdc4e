#!/usr/bin/env bash
# The tools that check the operations side: promtool, to check and unit
# test the Prometheus alert rules in examples/, and systemd-analyze, to
# verify the systemd units there (e2e/examples_test.go); bash-completion,
# zsh and fish, to try the shell completion scripts (e2e/completion_test.go).
# The tests fail without them.
#
#   scripts/ops-tools.sh install    install what is missing with apt-get
#                                   (Debian's prometheus for promtool,
#                                   systemd for systemd-analyze,
#                                   bash-completion, zsh, fish); reuse what
#                                   is already there
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
[ -f /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
command -v zsh >/dev/null || missing+=(zsh)
command -v fish >/dev/null || missing+=(fish)
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
[ -f /usr/share/bash-completion/bash_completion ] || die "bash_completion still missing after installing bash-completion"
command -v zsh >/dev/null || die "zsh still missing after installing it"
command -v fish >/dev/null || die "fish still missing after installing it"
