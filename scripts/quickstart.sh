#!/usr/bin/env bash
# Build vaultbak and run a real backup and verified restore on local
# directory regions: what a newcomer runs first. Everything lives under
# one scratch directory (default: a new temp dir; keep it with KEEP=1).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
work=${QUICKSTART_DIR:-$(mktemp -d -t vaultbak-quickstart.XXXXXX)}
mkdir -p "$work"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT

echo "==> building vaultbak"
(cd "$top" && go build -o "$work/vaultbak" ./cmd/vaultbak)
vb=("$work/vaultbak" --config "$work/vaultbak.yaml")

echo "==> a sample tree to back up: the vaultbak source, plus a few special files"
sample="$work/sample"
mkdir -p "$sample"
cp -a "$top"/{backend,backup,chunk,cmd,crypt,repo,restore} "$sample/"
printf 'hello\n' > "$sample/hello.txt"
: > "$sample/empty"
ln -s hello.txt "$sample/link-to-hello"
ln "$sample/hello.txt" "$sample/hardlink-to-hello"
mkfifo "$sample/a-fifo"
truncate -s 64M "$sample/sparse.img" && printf 'data in a sparse file' | dd of="$sample/sparse.img" bs=1 seek=$((32<<20)) conv=notrunc status=none

cat > "$work/vaultbak.yaml" <<YAML
# Two local directory regions: every region holds a full replica.
regions:
  - name: primary
    url: ./region-primary
  - name: secondary
    url: ./region-secondary
cache_dir: ./cache
YAML

echo "==> keygen: the recovery identity (keep it offline in real use)"
"${vb[@]}" keygen --out "$work/recovery.key" >/dev/null
echo "==> init: needs only the public recipient; writes this host's credential"
"${vb[@]}" init --recovery-recipient-file "$work/recovery.key"
echo "==> backup (host credential only: it can write, never read)"
"${vb[@]}" backup "$sample" --tag quickstart
echo "==> backup again: unchanged files are skipped"
"${vb[@]}" backup "$sample" --tag quickstart
echo "==> snapshots: the host sees no file counts or sizes; the recovery identity does"
"${vb[@]}" snapshots
"${vb[@]}" --identity "$work/recovery.key" snapshots
echo "==> restore with the recovery identity, verified chunk by chunk and file by file"
"${vb[@]}" --identity "$work/recovery.key" restore latest --target "$work/restored"
echo "==> compare the restored tree with the source"
diff -r --no-dereference --exclude=a-fifo "$sample" "$work/restored$sample"
test -p "$work/restored$sample/a-fifo"
[ "$(stat -c %i "$work/restored$sample/hello.txt")" = "$(stat -c %i "$work/restored$sample/hardlink-to-hello")" ]
echo "identical, including the symlink, the hard link, the FIFO and the sparse file ($(du -k "$work/restored$sample/sparse.img" | cut -f1) KiB on disk for 64 MiB)"
echo "==> check: pack hashes in every region, then decrypt and verify every chunk"
"${vb[@]}" check
"${vb[@]}" --identity "$work/recovery.key" check --read-data
echo
echo "quickstart OK: backup, restore and verification succeeded (work dir: $work)"
