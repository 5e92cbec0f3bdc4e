#!/usr/bin/env bash
# End-to-end benchmark of the built vaultbak binary against Debian's restic
# and borgbackup, on local directories and MinIO, beside the limits of the
# machine on the same data (tar, cat, pg_dump, cp -a). Every restore is
# compared byte for byte with its source; a difference fails the run.
# See scripts/bench/README.md for what is measured and the knobs below.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then # small datasets, one repetition: for iterating
	: "${REPS:=1}" "${BIG_MIB:=128}" "${TREE_SRC:=$(go env GOROOT)/src/net}" "${PG_SCALE:=2}" "${PG_SRC:=$(go env GOROOT)/src/net}"
	: "${BENCH_DATA:=${BENCH_DIR:-${TMPDIR:-/tmp}/vaultbak-bench}/data-quick}"
fi
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/vaultbak-bench}
BENCH_DATA=${BENCH_DATA:-$BENCH_DIR/data}
REPS=${REPS:-3}
STEPS=${STEPS:-backup nochange change restore}
DATASETS=${DATASETS:-tree big pg}
TOOLS=${TOOLS:-vaultbak restic borg}
TARGETS=${TARGETS:-local minio}
MULTI=${MULTI:-1}
REFS=${REFS:-1}
BIG_MIB=${BIG_MIB:-1024}
BLOCK_MIB=${BLOCK_MIB:-16}
TREE_SRC=${TREE_SRC:-$(go env GOROOT)}
TEXT_SRC=${TEXT_SRC:-$(go env GOROOT)/src}
PG_SCALE=${PG_SCALE:-20}
PG_SRC=${PG_SRC:-$(go env GOROOT)/src}
RESTORE_DIR=${RESTORE_DIR:-/dev/shm/vaultbak-bench-restore}
INSTALL=${INSTALL:-1}

say() { printf '==> %s\n' "$*" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }
has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }

mkdir -p "$BENCH_DIR" "$BENCH_DATA"
work="$BENCH_DIR/work"
res="$BENCH_DIR/results"
raw="$res/raw.tsv"
mkdir -p "$work" "$res"

# summarize prints the table of medians, ratios and the acceptance checks
# from raw.tsv.
summarize() {
	cat "$res/header.txt"
	echo
	awk -F'\t' -f "$top/scripts/bench/summary.awk" "$raw"
}

if [ "${SUMMARY_ONLY:-0}" = 1 ]; then
	summarize
	exit
fi

apt_install() { # apt_install PACKAGE...: install when allowed
	[ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null || return 1
	if [ ! -f "$BENCH_DIR/.apt-updated" ]; then
		apt-get update -qq > /dev/null 2>&1 || return 1
		touch "$BENCH_DIR/.apt-updated"
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" > /dev/null 2>&1
}

if [ ! -x /usr/bin/time ]; then
	say "installing GNU time (for CPU time and peak RSS)"
	apt_install time || die "/usr/bin/time is missing and could not be installed (apt-get install time)"
fi
if has "$TOOLS" restic && ! command -v restic > /dev/null; then
	say "installing restic from Debian"
	apt_install restic || die "restic is missing and could not be installed (apt-get install restic); TOOLS=... leaves it out"
fi
if has "$TOOLS" borg && ! command -v borg > /dev/null; then
	say "installing borgbackup from Debian"
	apt_install borgbackup || die "borg is missing and could not be installed (apt-get install borgbackup); TOOLS=... leaves it out"
fi

say "building vaultbak"
(cd "$top" && go build -o "$BENCH_DIR/vaultbak" ./cmd/vaultbak)
vbin="$BENCH_DIR/vaultbak"
[ -f "$BENCH_DIR/recovery.key" ] || "$vbin" keygen --out "$BENCH_DIR/recovery.key" > /dev/null

# ---- servers: MinIO (three regions) and PostgreSQL, stopped on exit ----

servers="$BENCH_DIR/servers"
cleanup() {
	[ ! -d "$servers/minio" ] || "$top/scripts/minio.sh" stop "$servers/minio" 2> /dev/null || true
	[ ! -d "$servers/pg" ] || "$top/scripts/postgres.sh" stop "$servers/pg" > /dev/null 2>&1 || true
	rm -rf "$RESTORE_DIR" "$work/copy"
}
trap cleanup EXIT

declare -a minio
if has "$TARGETS" minio || [ "$MULTI" = 1 ]; then
	"$top/scripts/minio.sh" install > /dev/null
	rm -rf "$servers/minio" # each run starts with empty servers
	mkdir -p "$servers"
	while read -r name url; do minio+=("$url"); done < <(MINIO_MEMLIMIT=1GiB "$top/scripts/minio.sh" start 3 "$servers/minio")
	[ "${#minio[@]}" = 3 ] || die "MinIO did not start three servers"
	export VB_S3_KEY=vaultbak VB_S3_SECRET=vaultbak-secret
	export AWS_ACCESS_KEY_ID=vaultbak AWS_SECRET_ACCESS_KEY=vaultbak-secret
	say "MinIO: ${minio[*]}"
fi

if has "$DATASETS" pg; then
	chmod o+x "$BENCH_DIR"
	mkdir -p "$servers" && chmod o+x "$servers"
	eval "$("$top/scripts/postgres.sh" start "$servers/pg" | sed 's/^/export /')"
	pg_dump_cmd=("$PGBIN/pg_dump" --no-password --restrict-key=vaultbakbench -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" vaultbak_bench)
fi

# ---- datasets (made once, kept in BENCH_DATA) ----

tree="$BENCH_DATA/tree"
big="$BENCH_DATA/big.img"
pgref="$BENCH_DATA/pg.sql" # a dump of the database, to compare restores with
tree_stamp="tree of $TREE_SRC ($(go version))"
big_stamp="big v2 ${BIG_MIB}MiB in ${BLOCK_MIB}MiB blocks, text from $TEXT_SRC ($(go version))"

if has "$DATASETS" tree && [ "$(cat "$BENCH_DATA/.tree-done" 2> /dev/null)" != "$tree_stamp" ]; then
	say "dataset tree: copying $TREE_SRC"
	rm -rf "$tree" "$BENCH_DATA/.tree-done"
	cp -a "$TREE_SRC" "$tree"
	echo "$tree_stamp" > "$BENCH_DATA/.tree-done"
fi

# text_stream writes the Go sources under TEXT_SRC 26 times, each pass
# with its letters rotated by one more place: text that compresses like
# source code but does not repeat, so it cannot deduplicate.
text_stream() {
	local lower=abcdefghijklmnopqrstuvwxyz upper=ABCDEFGHIJKLMNOPQRSTUVWXYZ k
	for k in $(seq 0 25); do
		find "$TEXT_SRC" -type f -name '*.go' -print0 | LC_ALL=C sort -z | xargs -0 cat |
			tr "a-zA-Z" "${lower:k}${lower:0:k}${upper:k}${upper:0:k}"
	done
}

# A changed-step run that was interrupted leaves big.img altered.
if has "$DATASETS" big && { [ -e "$BENCH_DATA/.big-dirty" ] || [ "$(cat "$BENCH_DATA/.big-done" 2> /dev/null)" != "$big_stamp" ]; }; then
	say "dataset big: ${BIG_MIB} MiB, alternating ${BLOCK_MIB} MiB blocks of random bytes (AES-CTR keystream) and Go source text"
	# Each random block is keystream from its own counter range (the block
	# number in the counter's high half). IVs 0, 2, 4… would give every
	# block the same keystream shifted by 32 bytes, which CDC deduplicates.
	rm -f "$big" "$BENCH_DATA/.big-done" "$BENCH_DATA/.big-dirty"
	blocks=$((BIG_MIB / BLOCK_MIB))
	text_blocks=$(((blocks + 1) / 2))
	text_stream 2> /dev/null | head -c $((text_blocks * BLOCK_MIB << 20)) > "$BENCH_DATA/text.tmp" || true
	for i in $(seq 0 $((blocks - 1))); do
		if [ $((i % 2)) = 0 ]; then
			head -c $((BLOCK_MIB << 20)) /dev/zero |
				openssl enc -aes-256-ctr -K "$(printf 'vaultbak-bench-key-%013d' 0 | od -An -tx1 | tr -d ' \n')" -iv "$(printf '%016x%016x' "$i" 0)"
		else
			dd if="$BENCH_DATA/text.tmp" bs="${BLOCK_MIB}M" skip=$((i / 2)) count=1 iflag=fullblock status=none
		fi
	done > "$big"
	rm -f "$BENCH_DATA/text.tmp"
	[ "$(stat -c %s "$big")" = $((BIG_MIB << 20)) ] || die "$big has the wrong size"
	echo "$big_stamp" > "$BENCH_DATA/.big-done"
fi

# The database lives in the throwaway cluster (remade when the cluster
# is): pgbench's tables at PG_SCALE (numbers and padding, like a busy OLTP
# schema) and one table holding every Go source file under PG_SRC (text).
# pg.sql is its dump, made twice to check that dumps are reproducible,
# which comparing restores with it needs (hence a fixed --restrict-key:
# pg_dump otherwise writes a random one into every dump).
pg_stamp="pg v1 scale $PG_SCALE, sources of $PG_SRC ($(go version)), cluster $servers/pg"
if has "$DATASETS" pg && ! "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d vaultbak_bench -c 'SELECT 1' > /dev/null 2>&1; then
	rm -f "$BENCH_DATA/.pg-done" # a new cluster
fi
if has "$DATASETS" pg && [ "$(cat "$BENCH_DATA/.pg-done" 2> /dev/null)" != "$pg_stamp" ]; then
	say "dataset pg: pgbench scale $PG_SCALE and the Go sources of $PG_SRC in PostgreSQL"
	rm -f "$BENCH_DATA/.pg-done" "$pgref"
	psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -U "$PGUSER")
	"${psql[@]}" -d postgres -c 'DROP DATABASE IF EXISTS vaultbak_bench' -c 'CREATE DATABASE vaultbak_bench'
	"$PGBIN/pgbench" -q -i -s "$PG_SCALE" -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" vaultbak_bench > /dev/null 2>&1
	"${psql[@]}" -d vaultbak_bench -c 'CREATE TABLE sources (path text PRIMARY KEY, body text NOT NULL)'
	find "$PG_SRC" -type f -name '*.go' | LC_ALL=C sort |
		"${psql[@]}" -d vaultbak_bench -c 'CREATE TEMP TABLE p (path text)' -c '\copy p from stdin' \
			-c 'INSERT INTO sources SELECT path, pg_read_file(path) FROM p'
	"${pg_dump_cmd[@]}" > "$pgref"
	"${pg_dump_cmd[@]}" | cmp -s - "$pgref" || die "two dumps of the benchmark database differ; restores cannot be compared with one"
	echo "$pg_stamp" > "$BENCH_DATA/.pg-done"
fi

bytes_of() { # total size of the regular files under $1
	find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d\n", s }'
}
declare -A path bytes
path[tree]=$tree
path[big]=$big
path[pg]=$pgref
for d in $DATASETS; do bytes[$d]=$(bytes_of "${path[$d]}"); done

# The change step overwrites 1% of big.img in 10 pieces spread over it, and
# puts the original bytes back afterwards.
piece=$(((BIG_MIB << 20) / 1000))
change_big() {
	touch "$BENCH_DATA/.big-dirty"
	for i in $(seq 0 9); do
		local off=$((i * (BIG_MIB << 20) / 10 + (BIG_MIB << 20) / 20))
		dd if="$big" of="$work/piece.$i" bs="$piece" count=1 skip="$off" iflag=skip_bytes status=none
		head -c "$piece" /dev/urandom | dd of="$big" bs="$piece" seek="$off" oflag=seek_bytes conv=notrunc status=none
	done
}
revert_big() {
	for i in $(seq 0 9); do
		local off=$((i * (BIG_MIB << 20) / 10 + (BIG_MIB << 20) / 20))
		dd if="$work/piece.$i" of="$big" bs="$piece" seek="$off" oflag=seek_bytes conv=notrunc status=none
		rm -f "$work/piece.$i"
	done
	rm -f "$BENCH_DATA/.big-dirty"
}

# ---- measuring ----

printf 'tool\ttarget\tdataset\tstep\trep\twall_s\tcpu_s\trss_kib\tbytes\trepo_bytes\tgrowth_bytes\tchanged_bytes\tuser_s\tsys_s\n' > "$raw"

# Restored trees of many files are deleted at the end of the run, not
# between steps: ext4 allocates inodes slowly right after many were
# deleted (its recently_deleted check), which would make every later file
# creation in the run, of whichever tool, pay for this cleanup. Restores go
# to tmpfs (RESTORE_DIR), where this does not happen, so they are removed
# at once there.
trash="$work/trash"
discard() {
	[ -e "$1" ] || return 0
	case $1 in
	"$RESTORE_DIR"*) rm -rf "$1" ;;
	*)
		mkdir -p "$trash"
		mv "$1" "$trash/$(date +%s%N)"
		;;
	esac
}

# size_of REPO: bytes a repository takes: a directory, or a MinIO bucket
# ("minio:INDEX:BUCKET", measured in the server's data directory, so with
# MinIO's own metadata).
size_of() {
	case $1 in
	-) echo - ;;
	minio:*)
		local i=${1#minio:} b
		b=${i#*:} i=${i%%:*}
		if [ -d "$servers/minio/minio-$i/data/$b" ]; then du -sb "$servers/minio/minio-$i/data/$b" | cut -f1; else echo 0; fi
		;;
	*) if [ -d "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi ;;
	esac
}

# measure TOOL TARGET DATASET STEP REP BYTES REPO CMD...: runs CMD under
# GNU time and records wall time, user+sys CPU time and peak RSS (of the
# largest process: GNU time reports the maximum over the command and the
# children it waited for), and the size of the repository REPO ("-" for
# none) and its growth.
changed=0
measure() {
	local tool=$1 target=$2 dataset=$3 step=$4 rep=$5 nbytes=$6 repo=$7
	shift 7
	local before after status=0
	before=$(size_of "$repo")
	/usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" > "$work/out" 2> "$work/err" || status=$?
	if [ "$status" != 0 ]; then
		echo "run.sh: $tool $target $dataset $step failed (exit $status): $*" >&2
		tail -20 "$work/err" >&2
		exit 1
	fi
	local wall user sys rss
	read -r wall user sys rss < <(tail -1 "$work/time")
	after=$(size_of "$repo")
	local growth=-
	[ "$after" = - ] || growth=$((after - before))
	local cpu
	cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$target" "$dataset" "$step" "$rep" "$wall" "$cpu" "$rss" "$nbytes" "$after" "$growth" "$changed" "$user" "$sys" >> "$raw"
	printf '    %-8s %-7s %-4s %-9s rep %s: %6.2fs wall, %6.2fs cpu, %5d MiB rss\n' "$tool" "$target" "$dataset" "$step" "$rep" "$wall" "$cpu" $((rss / 1024)) >&2
}

# verify DATASET RESTORED-ROOT: compare a restore with its source, byte for
# byte; any difference fails the run.
verify() {
	local src=${path[$1]} got
	case $1 in
	tree)
		got=$2$src
		[ -d "$got" ] || die "restore of tree: $got is missing"
		diff -r --no-dereference "$src" "$got" > "$work/diff" 2>&1 || die "restored tree differs from $src: $(head -3 "$work/diff")"
		;;
	big)
		got=$2$src
		cmp "$src" "$got" > "$work/diff" 2>&1 || die "restored big differs from $src: $(cat "$work/diff")"
		;;
	pg)
		got=$(find "$2" -type f -name pg.sql | head -1)
		[ -n "$got" ] || die "restore of pg: no pg.sql under $2"
		cmp "$src" "$got" > "$work/diff" 2>&1 || die "restored pg dump differs from $src: $(cat "$work/diff")"
		;;
	esac
}

snapshot_of() { # the snapshot ID in the JSON summary of the last command
	grep -o "\"$1\":\"[0-9a-f]*\"" "$work/out" | tail -1 | cut -d'"' -f4
}

# vaultbak_config DIR REGION...: a config with the given regions, each
# "local" or a MinIO index (1-3); buckets are named after DIR.
vaultbak_config() {
	local dir=$1 i=0 r
	shift
	{
		echo "regions:"
		for r in "$@"; do
			i=$((i + 1))
			if [ "$r" = local ]; then
				printf '  - name: region-%d\n    url: ./region-%d\n' "$i" "$i"
			else
				printf '  - name: minio-%d\n    url: s3+http://%s/%s\n    access_key_id_env: VB_S3_KEY\n    secret_access_key_env: VB_S3_SECRET\n' "$r" "${minio[$((r - 1))]#http://}" "$(basename "$dir")"
			fi
		done
		echo "cache_dir: ./cache"
	} > "$dir/vaultbak.yaml"
}

# backup_cmd TOOL DATASET: the command line of one backup, in ${cmd[@]}.
# A pg backup streams pg_dump's output into the tool, as a user does.
backup_cmd() {
	local tool=$1 d=$2
	case $tool:$d in
	vaultbak:pg) cmd=("$vbin" --config "$dir/vaultbak.yaml" --json backup --stdin-filename pg.sql --stdin-from-command -- "${pg_dump_cmd[@]}") ;;
	vaultbak:*) cmd=("$vbin" --config "$dir/vaultbak.yaml" --json backup "${path[$d]}") ;;
	restic:pg) cmd=(bash -c '"$@" | restic --json --host bench backup --stdin --stdin-filename pg.sql' _ "${pg_dump_cmd[@]}") ;;
	restic:*) cmd=(restic --json --host bench backup "${path[$d]}") ;;
	borg:pg) cmd=(borg create --content-from-command --stdin-name pg.sql "::s$((++serial))" -- "${pg_dump_cmd[@]}") ;;
	borg:*) cmd=(borg create "::s$((++serial))" "${path[$d]}") ;;
	esac
}

# run_tool TOOL TARGET DATASET REP: every step on one dataset, into a new
# repository (so that its size is that dataset's alone).
serial=0
run_tool() {
	local tool=$1 target=$2 d=$3 rep=$4
	dir="$work/$tool-$target-$d-$rep"
	rm -rf "$dir"
	mkdir -p "$dir"
	local repo first restore_cmd=()
	local rdir="$RESTORE_DIR/$tool-$target-$d"
	case $tool in
	vaultbak)
		if [ "$target" = local ]; then
			vaultbak_config "$dir" local
			repo=$dir/region-1
		else
			vaultbak_config "$dir" 1
			repo=minio:1:$(basename "$dir")
		fi
		"$vbin" --config "$dir/vaultbak.yaml" init --host bench --recovery-recipient-file "$BENCH_DIR/recovery.key" > /dev/null
		;;
	restic)
		export RESTIC_PASSWORD=vaultbak-bench RESTIC_CACHE_DIR=$dir/cache
		if [ "$target" = local ]; then
			export RESTIC_REPOSITORY=$dir/region-1
			repo=$dir/region-1
		else
			export RESTIC_REPOSITORY=s3:${minio[0]}/$(basename "$dir")
			repo=minio:1:$(basename "$dir")
		fi
		restic init --repository-version 2 > /dev/null
		;;
	borg)
		export BORG_PASSPHRASE=vaultbak-bench BORG_REPO=$dir/region-1 BORG_BASE_DIR=$dir/borg
		repo=$dir/region-1
		borg init -e repokey > /dev/null 2>&1
		;;
	esac

	warm_mem "${bytes[$d]}"
	warm "$d"
	backup_cmd "$tool" "$d"
	local step
	for step in backup nochange; do
		if has "$STEPS" "$step"; then
			measure "$tool" "$target" "$d" "$step" "$rep" "${bytes[$d]}" "$repo" "${cmd[@]}"
		elif [ "$step" = backup ]; then # the later steps need it, unmeasured
			"${cmd[@]}" > "$work/out" 2> "$work/err" || die "$tool backup failed: $(tail -3 "$work/err")"
		fi
		case $tool in
		vaultbak) [ -n "${first:-}" ] || first=$(snapshot_of snapshot) ;;
		restic) [ -n "${first:-}" ] || first=$(snapshot_of snapshot_id) ;;
		borg) [ -n "${first:-}" ] || first=s$serial ;;
		esac
		backup_cmd "$tool" "$d"
	done
	if has "$STEPS" change && [ "$d" = big ]; then
		change_big
		changed=$((10 * piece))
		measure "$tool" "$target" big change "$rep" "${bytes[big]}" "$repo" "${cmd[@]}"
		changed=0
		revert_big
	fi
	if has "$STEPS" restore; then
		# The first snapshot: what the source holds again after revert_big.
		rm -rf "$rdir"
		mkdir -p "$rdir"
		case $tool in
		vaultbak) restore_cmd=("$vbin" --config "$dir/vaultbak.yaml" --identity "$BENCH_DIR/recovery.key" restore "$first" --target "$rdir") ;;
		restic) restore_cmd=(restic restore "$first" --target "$rdir") ;;
		borg) restore_cmd=(bash -c 'cd "$1" && borg extract "::$2"' _ "$rdir" "$first") ;;
		esac
		warm_mem "${bytes[$d]}"
		warm_repo "$repo" "$dir"
		measure "$tool" "$target" "$d" restore "$rep" "${bytes[$d]}" - "${restore_cmd[@]}"
		verify "$d" "$rdir"
		discard "$rdir"
	fi
	unset RESTIC_REPOSITORY RESTIC_PASSWORD RESTIC_CACHE_DIR BORG_PASSPHRASE BORG_REPO BORG_BASE_DIR
	rm -rf "$dir"
}

# run_multi DATASET REP: vaultbak backs up into three MinIO regions in one
# run; restic backs up into one and copies the snapshot into repositories
# in the two others (restic copy), timed together.
run_multi() {
	local d=$1 rep=$2
	dir="$work/vaultbak-minio3-$d-$rep"
	rm -rf "$dir" && mkdir -p "$dir"
	vaultbak_config "$dir" 1 2 3
	"$vbin" --config "$dir/vaultbak.yaml" init --host bench --recovery-recipient-file "$BENCH_DIR/recovery.key" > /dev/null
	warm_mem $((3 * bytes[$d]))
	warm "$d"
	backup_cmd vaultbak "$d"
	measure vaultbak minio3 "$d" backup "$rep" "${bytes[$d]}" "minio:1:$(basename "$dir")" "${cmd[@]}"
	rm -rf "$dir"

	if has "$TOOLS" restic; then
		dir="$work/restic-minio3-$d-$rep"
		rm -rf "$dir" && mkdir -p "$dir"
		local b
		b=$(basename "$dir")
		export RESTIC_PASSWORD=vaultbak-bench RESTIC_FROM_PASSWORD=vaultbak-bench RESTIC_CACHE_DIR=$dir/cache
		export RESTIC_REPOSITORY=s3:${minio[0]}/$b
		restic init --repository-version 2 > /dev/null
		local i
		for i in 1 2; do
			restic -r "s3:${minio[$i]}/$b" init --repository-version 2 --from-repo "$RESTIC_REPOSITORY" --copy-chunker-params > /dev/null
		done
		warm_mem $((3 * bytes[$d]))
		warm "$d"
		backup_cmd restic "$d"
		# shellcheck disable=SC2016 # the script takes its arguments as $1…
		measure restic minio3 "$d" backup "$rep" "${bytes[$d]}" "minio:1:$b" bash -c '"${@:3}" && restic -r "$1" copy --from-repo "$RESTIC_REPOSITORY" && restic -r "$2" copy --from-repo "$RESTIC_REPOSITORY"' _ "s3:${minio[1]}/$b" "s3:${minio[2]}/$b" "${cmd[@]}"
		unset RESTIC_REPOSITORY RESTIC_PASSWORD RESTIC_FROM_PASSWORD RESTIC_CACHE_DIR
		rm -rf "$dir"
	fi
}

# shellcheck disable=SC2016 # the bash -c scripts take their paths as $1
run_refs() { # run_refs DATASET REP: the machine's limits on the same data
	local d=$1 rep=$2
	case $d in
	tree) measure ref - tree "tar|cat" "$rep" "${bytes[tree]}" - bash -c 'tar cf - -C "$1" . | cat > /dev/null' _ "$tree" ;;
	big) measure ref - big cat "$rep" "${bytes[big]}" - bash -c 'cat "$1" > /dev/null' _ "$big" ;;
	pg) measure ref - pg "pg_dump|cat" "$rep" "${bytes[pg]}" - bash -c '"$@" | cat > /dev/null' _ "${pg_dump_cmd[@]}" ;;
	esac
	rm -rf "$RESTORE_DIR/copy"
	mkdir -p "$RESTORE_DIR/copy"
	warm_mem "${bytes[$d]}"
	measure ref - "$d" "cp-a" "$rep" "${bytes[$d]}" - cp -a "${path[$d]}" "$RESTORE_DIR/copy/"
	rm -rf "$RESTORE_DIR/copy"
}

# warm DATASET: read the dataset once, untimed, right before it is
# measured, so that the first tool measured on it is not the only one to
# read from disk (the steps before, on other data, may have pushed it out of
# the page cache; for pg, PostgreSQL's tables).
warm() {
	case $1 in
	pg) "${pg_dump_cmd[@]}" > /dev/null ;;
	*) tar cf - -C "$(dirname "${path[$1]}")" "$(basename "${path[$1]}")" | cat > /dev/null ;;
	esac
}

# warm_repo REPO DIR: read a repository (as size_of names it) and the
# tool's local state in DIR once, untimed, right before a restore from it,
# so that every tool restores from the page cache: this machine pages out
# what was not touched for a minute, and the steps between a backup and its
# restore can take longer than that.
warm_repo() {
	local dirs=("$2") # a local region is inside DIR
	case $1 in
	minio:*)
		local i=${1#minio:} b
		b=${i#*:} i=${i%%:*}
		dirs+=("$servers/minio/minio-$i/data/$b")
		;;
	esac
	find "${dirs[@]}" -type f -exec cat {} + > /dev/null 2>&1 || true
}

# warm_mem BYTES: write BYTES (and 256 MiB for the tool's own memory) into
# the restore tmpfs and delete them again, untimed, right before a step that
# allocates that much: a restore into tmpfs, a backup into a region on
# disk, the cp -a reference. On these virtual machines memory that has been
# free for a while costs ~2.5 s of system time per GiB on its first touch
# (reclaiming page cache ~1 s), memory freed just before 0.45 s; without
# this, cp -a of the 1 GiB file took 1.9-2.4 s instead of 0.5 s, and every
# tool's restore paid the same extra seconds (see README.md).
warm_mem() {
	local mib avail
	mib=$((($1 >> 20) + 256))
	avail=$(awk '/MemAvailable/ { print int($2 / 1024) }' /proc/meminfo)
	[ "$mib" -le $((avail - 2048)) ] || mib=$((avail - 2048))
	[ "$mib" -gt 0 ] || return 0
	dd if=/dev/zero of="$RESTORE_DIR/.warm" bs=1M count="$mib" status=none 2> /dev/null || true
	rm -f "$RESTORE_DIR/.warm"
}

rm -rf "$trash" "$RESTORE_DIR" # left by an interrupted run
mkdir -p "$RESTORE_DIR"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
say "measuring: reps=$REPS steps='$STEPS' datasets='$DATASETS' tools='$TOOLS' targets='$TARGETS' multi=$MULTI (results in $res)"
for rep in $(seq 1 "$REPS"); do
	say "repetition $rep of $REPS"
	for d in $DATASETS; do
		warm "$d"
		[ "$REFS" != 1 ] || run_refs "$d" "$rep"
		for target in $TARGETS; do
			for tool in $TOOLS; do
				[ "$tool:$target" != borg:minio ] || continue # borg has no S3 backend
				run_tool "$tool" "$target" "$d" "$rep"
			done
		done
		[ "$MULTI" != 1 ] || run_multi "$d" "$rep"
	done
done
took=$(($(date +%s) - start))

# ---- summary ----

{
	echo "vaultbak $(git -C "$top" describe --always --dirty 2> /dev/null || echo unknown) vs $(restic version 2> /dev/null | cut -d' ' -f1-2 || true), $(borg --version 2> /dev/null || true); MinIO $("$top/scripts/minio.sh" install 2> /dev/null | xargs -r go version -m 2> /dev/null | awk '$1 == "mod" && $2 == "github.com/minio/minio" { print $3 }')"
	echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(go version | cut -d' ' -f3), load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg); ${took}s"
	echo "medians of $REPS repetitions; page cache warm; restores into $RESTORE_DIR ($(stat -f -c %T "$RESTORE_DIR" 2> /dev/null || echo ?)), each compared byte for byte with its source"
	echo "MB/s = dataset bytes / wall time (10^6 bytes); cpu = user + sys of the command and its children (MinIO's own CPU not counted)"
	echo "repo = one region's size after the step, growth = what the step added; restic: zstd auto; borg: repokey, lz4 (defaults)"
	for d in $DATASETS; do printf '%s: %s, %s files, %.1f MiB\n' "$d" "${path[$d]}" "$(find "${path[$d]}" -type f | wc -l)" "$(awk -v b="${bytes[$d]}" 'BEGIN { print b / 1048576 }')"; done
} > "$res/header.txt"
summarize | tee "$res/summary.txt"
echo
echo "raw figures: $raw"
rm -rf "$trash"
