#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): formatting,
# vet (also for macOS and FreeBSD), staticcheck, unit tests with the race
# detector, then the end-to-end tests that drive the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$(go env GOPATH)/bin:$PATH"

echo "==> gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "not gofmt-formatted:"; echo "$unformatted"; exit 1
fi

echo "==> go vet"
go vet ./...

# vaultbak builds for Linux, macOS, FreeBSD and OpenBSD, whose stat fields
# and mknod signatures differ (backup/stat_*.go, restore/mknod_*.go). Vet
# type-checks every package, tests included, for macOS and FreeBSD: with
# Linux above, that is each variant of those files (OpenBSD's take Linux's).
for target in darwin/arm64 freebsd/amd64; do
  echo "==> go vet for $target"
  GOOS=${target%/*} GOARCH=${target#*/} go vet ./...
done

echo "==> staticcheck"
if ! command -v staticcheck >/dev/null; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
staticcheck ./...

echo "==> MinIO for the S3 tests (built once into the tools cache)"
scripts/minio.sh install

echo "==> unit tests (race detector)"
go test -race -count=1 $(go list ./... | grep -v -e /e2e -e /bench)

# Every decoder of untrusted input has a fuzz target; each fuzzes for
# FUZZTIME (default 60s) and a crash fails the suite. FUZZJOBS targets run
# at once with one fuzzing worker each (default 4), so a dozen targets take
# about three minutes.
export FUZZTIME=${FUZZTIME:-60s}
fuzzdir=$(mktemp -d)
echo "==> fuzz ($FUZZTIME per target, ${FUZZJOBS:-4} at a time)"
for pkg in ./repo ./crypt ./chunk; do
  go test -list '^Fuzz' "$pkg" | grep '^Fuzz' | sed "s|^|$pkg |"
done | xargs -P "${FUZZJOBS:-4}" -L 1 bash -c '
  log="$0/$(basename "$1")-$2.log"
  if go test -run "^\$" -fuzz "^$2\$" -fuzztime "$FUZZTIME" -parallel 1 "$1" > "$log" 2>&1; then
    echo "ok   $1 $2"
  else
    echo "fuzz target $1 $2 failed:"; tail -40 "$log"; exit 255
  fi' "$fuzzdir"

if [ -d e2e ]; then
  echo "==> end-to-end tests (built binary)"
  scripts/postgres.sh install >/dev/null # e2e/postgres_test.go needs PostgreSQL
  scripts/ops-tools.sh install # promtool, systemd-analyze, shells: e2e/examples_test.go, completion_test.go
  go test -count=1 -timeout 20m ./e2e/
fi
