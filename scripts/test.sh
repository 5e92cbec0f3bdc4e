#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): formatting,
# vet, staticcheck, unit tests with the race detector, then the end-to-end
# tests that drive the built binary.
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

echo "==> staticcheck"
if ! command -v staticcheck >/dev/null; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
staticcheck ./...

echo "==> MinIO for the S3 tests (built once into the tools cache)"
scripts/minio.sh install

echo "==> unit tests (race detector)"
go test -race -count=1 $(go list ./... | grep -v -e /e2e -e /bench)

# Every decoder of untrusted input has a fuzz target; each runs for
# FUZZTIME (default 10s; CI may raise it) so a crash fails the suite.
fuzzlog=$(mktemp)
echo "==> fuzz (${FUZZTIME:-10s} per target)"
for pkg in ./repo ./crypt ./chunk; do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-10s}" "$pkg" > "$fuzzlog" 2>&1 || {
      echo "fuzz target $pkg $target failed:"; tail -40 "$fuzzlog"; exit 1; }
    echo "ok   $pkg $target"
  done
done

if [ -d e2e ]; then
  echo "==> end-to-end tests (built binary)"
  scripts/postgres.sh install >/dev/null # e2e/postgres_test.go needs PostgreSQL
  go test -count=1 -timeout 20m ./e2e/
fi
