#!/usr/bin/env bash
# End-to-end throughput of the built vaultbak binary on local directory
# regions, beside the limits of the machine (tar, cat, cp -a) and, when it
# is installed or installable from Debian, restic on the same data.
# See scripts/bench/README.md for what is measured and the knobs below.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)

BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/vaultbak-bench}
BENCH_DATA=${BENCH_DATA:-$BENCH_DIR/data}
REPS=${REPS:-3}
STEPS=${STEPS:-backup nochange change restore}
DATASETS=${DATASETS:-tree big}
REGIONS=${REGIONS:-1 3}
TOOLS=${TOOLS:-vaultbak restic}
REFS=${REFS:-1}
BIG_MIB=${BIG_MIB:-1024}
BLOCK_MIB=${BLOCK_MIB:-16}
TREE_SRC=${TREE_SRC:-$(go env GOROOT)}
TEXT_SRC=${TEXT_SRC:-$(go env GOROOT)/src}
INSTALL=${INSTALL:-1}
VERIFY=${VERIFY:-1}

say() { printf '==> %s\n' "$*" >&2; }
has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }

apt_install() { # apt_install PACKAGE: install when allowed; fails quietly
	[ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
	if [ ! -f "$BENCH_DIR/.apt-updated" ]; then
		apt-get update -qq >/dev/null 2>&1 || return 1
		touch "$BENCH_DIR/.apt-updated"
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null 2>&1
}

mkdir -p "$BENCH_DIR" "$BENCH_DATA"
work="$BENCH_DIR/work"
res="$BENCH_DIR/results"
raw="$res/raw.tsv"
mkdir -p "$work" "$res"

# summarize prints the table of medians (and ratios to restic) from raw.tsv.
summarize() {
	cat "$res/header.txt"
	echo
	awk -F'\t' '
	function median(list,   n, a, i, j, t) {
		n = split(list, a, ",")
		if (a[1] == "-") return "-"
		for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function range(list,   n, a, i, lo, hi) {
		n = split(list, a, ",")
		lo = hi = a[1] + 0
		for (i = 2; i <= n; i++) { if (a[i] + 0 < lo) lo = a[i] + 0; if (a[i] + 0 > hi) hi = a[i] + 0 }
		return sprintf("(%.2f-%.2f)", lo, hi)
	}
	function mib(x) { return x == "-" ? "-" : sprintf("%.1f", x / 1048576) }
	BEGIN { ns = split("tar|cat cat cp-a backup nochange change restore", step, " "); step[3] = "cp -a"; for (i = 1; i <= ns; i++) seen[step[i]] }
	NR == 1 { next }
	{
		k = $1 "\t" $2 "\t" $3 "\t" $4
		if (!(k in cnt)) { bytes[k] = $9 }
		if (!($3 in seen)) { seen[$3]; data[++nd] = $3 }
		if (!($4 in seen)) { seen[$4]; step[++ns] = $4 }
		if (!(($1 "\t" $2) in seen)) { seen[$1 "\t" $2]; who[++nw] = $1 "\t" $2 }
		sep = cnt[k]++ ? "," : ""
		wall[k] = wall[k] sep $6; cpu[k] = cpu[k] sep $7; rss[k] = rss[k] sep $8
		repo[k] = repo[k] sep $10; grow[k] = grow[k] sep $11
	}
	END {
		# Rows by dataset, then step, then tool: what to compare is adjacent.
		for (i = 1; i <= nd; i++) for (j = 1; j <= ns; j++) for (l = 1; l <= nw; l++) {
			k = who[l] "\t" data[i] "\t" step[j]
			if (k in cnt) order[++n] = k
		}
		printf "%-8s %-7s %-5s %-9s %7s %15s %8s %7s %8s %9s %8s\n", "tool", "regions", "data", "step", "wall s", "(min-max)", "MB/s", "cpu s", "rss MiB", "repo MiB", "growth"
		for (i = 1; i <= n; i++) {
			k = order[i]; split(k, f, "\t")
			w = median(wall[k]); c = median(cpu[k]); r = median(rss[k])
			W[k] = w; C[k] = c; R[k] = r; S[k] = median(repo[k]); G[k] = median(grow[k])
			if (i > 1 && f[3] != prev) print ""
			prev = f[3]
			printf "%-8s %-7s %-5s %-9s %7.2f %15s %8s %7.2f %8.0f %9s %8s\n", f[1], f[2], f[3], f[4], w, range(wall[k]), (w > 0 ? sprintf("%.1f", bytes[k] / w / 1e6) : "-"), c, r / 1024, mib(S[k]), mib(G[k])
		}
		hdr = 0
		for (i = 1; i <= n; i++) {
			k = order[i]; split(k, f, "\t")
			if (f[1] != "vaultbak" || f[2] != "1") continue
			o = "restic\t1\t" f[3] "\t" f[4]
			if (!(o in W) || W[o] <= 0 || C[o] <= 0) continue
			if (!hdr++) { printf "\nvaultbak (1 region) / restic, medians, same steps (below 1: vaultbak takes less; growth only above 1 MiB)\n%-5s %-12s %8s %8s %8s %9s %9s\n", "data", "step", "wall", "cpu", "rss", "repo", "growth" }
			printf "%-5s %-12s %8.2f %8.2f %8.2f %9s %9s\n", f[3], f[4], W[k] / W[o], C[k] / C[o], R[k] / R[o], \
				(S[o] > 0 && S[k] != "-") ? sprintf("%.2f", S[k] / S[o]) : "-", (G[o] >= 1048576 && G[k] != "-") ? sprintf("%.2f", G[k] / G[o]) : "-"
		}
	}' "$raw"
}

if [ "${SUMMARY_ONLY:-0}" = 1 ]; then
	summarize
	exit
fi

if [ ! -x /usr/bin/time ]; then
	say "installing GNU time (for CPU time and peak RSS)"
	apt_install time || { echo "run.sh: /usr/bin/time is missing and could not be installed (apt-get install time)" >&2; exit 1; }
fi
if has "$TOOLS" restic && ! command -v restic >/dev/null; then
	say "installing restic from Debian"
	apt_install restic || { say "restic is not available: measuring vaultbak alone"; TOOLS=${TOOLS//restic/}; }
fi

say "building vaultbak"
(cd "$top" && go build -o "$BENCH_DIR/vaultbak" ./cmd/vaultbak)
vbin="$BENCH_DIR/vaultbak"

# ---- datasets (made once, kept in BENCH_DATA) ----

tree="$BENCH_DATA/tree"
big="$BENCH_DATA/big.img"
tree_stamp="tree of $TREE_SRC ($(go version))"
big_stamp="big v2 ${BIG_MIB}MiB in ${BLOCK_MIB}MiB blocks, text from $TEXT_SRC ($(go version))"

if [ "$(cat "$BENCH_DATA/.tree-done" 2>/dev/null)" != "$tree_stamp" ]; then
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
if [ -e "$BENCH_DATA/.big-dirty" ] || [ "$(cat "$BENCH_DATA/.big-done" 2>/dev/null)" != "$big_stamp" ]; then
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
	[ "$(stat -c %s "$big")" = $((BIG_MIB << 20)) ] || { echo "run.sh: $big has the wrong size" >&2; exit 1; }
	echo "$big_stamp" > "$BENCH_DATA/.big-done"
fi

bytes_of() { # total size of the regular files under $1
	find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d\n", s }'
}
declare -A path bytes
path[tree]=$tree
path[big]=$big
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

printf 'tool\tregions\tdataset\tstep\trep\twall_s\tcpu_s\trss_kib\tbytes\trepo_bytes\tgrowth_bytes\n' > "$raw"

# discard DIR DATASET removes a restored or copied tree of many files after
# the run rather than now: ext4 allocates inodes slowly right after many
# were deleted (its recently_deleted check), which would make every later
# file creation in the run, of whichever tool, pay for this cleanup.
trash="$work/trash"
discard() {
	[ -e "$1" ] || return 0
	if [ "$2" = big ]; then
		rm -rf "$1"
		return
	fi
	mkdir -p "$trash"
	mv "$1" "$trash/$(date +%s%N)"
}

repo_size() { # apparent size of a repository directory (its first region)
	if [ -d "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi
}

# measure TOOL REGIONS DATASET STEP REP BYTES REPO CMD...: runs CMD under
# GNU time and records wall time, user+sys CPU time and peak RSS, and the
# size of the repository directory REPO ("-" for none) and its growth.
measure() {
	local tool=$1 regions=$2 dataset=$3 step=$4 rep=$5 nbytes=$6 repo=$7
	shift 7
	local before=0 after=0 status=0
	[ "$repo" = - ] || before=$(repo_size "$repo")
	/usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" > "$work/out" 2> "$work/err" || status=$?
	if [ "$status" != 0 ] && ! { [ "$tool" = vaultbak ] && [ "$status" = 3 ]; }; then
		echo "run.sh: $tool $step $dataset failed (exit $status): $*" >&2
		tail -20 "$work/err" >&2
		exit 1
	fi
	[ "$status" = 0 ] || say "warning: $tool $step $dataset exited 3 (warnings): $(head -3 "$work/err")"
	local wall user sys rss
	read -r wall user sys rss < <(tail -1 "$work/time")
	if [ "$repo" = - ]; then
		after=- before=-
	else
		after=$(repo_size "$repo")
	fi
	local growth=-
	[ "$after" = - ] || growth=$((after - before))
	local cpu
	cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$regions" "$dataset" "$step" "$rep" "$wall" "$cpu" "$rss" "$nbytes" "$after" "$growth" >> "$raw"
	printf '    %-8s regions=%-2s %-5s %-9s rep %s: %6.2fs wall, %6.2fs cpu, %5d MiB rss\n' "$tool" "$regions" "$dataset" "$step" "$rep" "$wall" "$cpu" $((rss / 1024)) >&2
}

snapshot_of() { # the snapshot ID in the JSON summary of the last command
	grep -o "\"$1\":\"[0-9a-f]*\"" "$work/out" | tail -1 | cut -d'"' -f4
}

verify() { # verify DATASET RESTORED-ROOT: compare the restore with the source
	[ "$VERIFY" = 1 ] || return 0
	local src=${path[$1]}
	if [ "$1" = tree ]; then
		diff -r --no-dereference "$src" "$2$src" > /dev/null || { echo "run.sh: restored $1 differs from $src" >&2; exit 1; }
	else
		cmp -s "$src" "$2$src" || { echo "run.sh: restored $1 differs from $src" >&2; exit 1; }
	fi
}

# run_tool TOOL REGIONS DATASET REP: every step on one dataset, into a new
# repository (so that its size is that dataset's alone).
run_tool() {
	local tool=$1 n=$2 d=$3 rep=$4
	local dir="$work/$tool-r$n-$d"
	rm -rf "$dir"
	discard "$work/restore" tree
	mkdir -p "$dir"
	local -a cli
	local repo="$dir/region-1" key first
	if [ "$tool" = vaultbak ]; then
		{
			echo "regions:"
			for i in $(seq 1 "$n"); do printf '  - name: region-%d\n    url: ./region-%d\n' "$i" "$i"; done
			echo "cache_dir: ./cache"
		} > "$dir/vaultbak.yaml"
		cli=("$vbin" --config "$dir/vaultbak.yaml" --json)
		[ -f "$BENCH_DIR/recovery.key" ] || "$vbin" keygen --out "$BENCH_DIR/recovery.key" > /dev/null
		"${cli[@]}" init --host bench --recovery-recipient-file "$BENCH_DIR/recovery.key" > /dev/null
		key=snapshot
	else
		export RESTIC_REPOSITORY=$repo RESTIC_PASSWORD=vaultbak-bench RESTIC_CACHE_DIR=$dir/cache
		cli=(restic --json --host bench)
		restic init --repository-version 2 > /dev/null
		key=snapshot_id
	fi

	if has "$STEPS" backup; then
		measure "$tool" "$n" "$d" backup "$rep" "${bytes[$d]}" "$repo" "${cli[@]}" backup "${path[$d]}"
	else # the later steps need it, unmeasured
		"${cli[@]}" backup "${path[$d]}" > "$work/out"
	fi
	first=$(snapshot_of "$key")
	if has "$STEPS" nochange; then
		measure "$tool" "$n" "$d" nochange "$rep" "${bytes[$d]}" "$repo" "${cli[@]}" backup "${path[$d]}"
	fi
	if has "$STEPS" change && [ "$d" = big ]; then
		change_big
		measure "$tool" "$n" big change "$rep" "${bytes[big]}" "$repo" "${cli[@]}" backup "$big"
		revert_big
	fi
	if has "$STEPS" restore; then
		# The first snapshot: what the source holds again after revert_big.
		if [ "$tool" = vaultbak ]; then
			measure "$tool" "$n" "$d" restore "$rep" "${bytes[$d]}" - "${cli[@]}" --identity "$BENCH_DIR/recovery.key" restore "$first" --target "$work/restore"
		else
			measure "$tool" "$n" "$d" restore "$rep" "${bytes[$d]}" - "${cli[@]}" restore "$first" --target "$work/restore"
		fi
		[ "$rep" != 1 ] || verify "$d" "$work/restore"
		discard "$work/restore" "$d"
	fi
	rm -rf "$dir"
	[ "$tool" = vaultbak ] || unset RESTIC_REPOSITORY RESTIC_PASSWORD RESTIC_CACHE_DIR
}

# shellcheck disable=SC2016 # the bash -c scripts take their paths as $1
run_refs() { # the machine's limits on the same data
	local rep=$1 d
	for d in $DATASETS; do
		if [ "$d" = tree ]; then
			measure ref - tree "tar|cat" "$rep" "${bytes[tree]}" - bash -c 'tar cf - -C "$1" . | cat > /dev/null' _ "$tree"
		else
			measure ref - big cat "$rep" "${bytes[big]}" - bash -c 'cat "$1" > /dev/null' _ "$big"
		fi
		mkdir -p "$work/copy"
		measure ref - "$d" "cp -a" "$rep" "${bytes[$d]}" - cp -a "${path[$d]}" "$work/copy/"
		discard "$work/copy" "$d"
	done
}

rm -rf "$trash" "$work/copy" "$work/restore" # left by an interrupted run
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
say "measuring: reps=$REPS steps='$STEPS' datasets='$DATASETS' regions='$REGIONS' tools='$TOOLS' (results in $res)"
# Warm the page cache once, so that the first tool measured is not the
# only one to read from disk.
for d in $DATASETS; do tar cf - -C "$BENCH_DATA" "$(basename "${path[$d]}")" | cat > /dev/null; done
for rep in $(seq 1 "$REPS"); do
	say "repetition $rep of $REPS"
	[ "$REFS" != 1 ] || run_refs "$rep"
	for d in $DATASETS; do
		for tool in $TOOLS; do
			if [ "$tool" = vaultbak ]; then
				for n in $REGIONS; do run_tool vaultbak "$n" "$d" "$rep"; done
			else
				run_tool "$tool" 1 "$d" "$rep"
			fi
		done
	done
done
took=$(($(date +%s) - start))

# ---- summary ----

{
	echo "vaultbak $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown) vs $(restic version 2>/dev/null | cut -d' ' -f1-2 || true)"
	echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(go version | cut -d' ' -f3), load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg); ${took}s"
	echo "medians of $REPS repetitions; page cache warm; MB/s = dataset bytes / wall time (10^6 bytes);"
	echo "repo = one region's size after the step, growth = what the step added to it"
	for d in $DATASETS; do printf '%s: %s, %s files, %.1f MiB\n' "$d" "${path[$d]}" "$(find "${path[$d]}" -type f | wc -l)" "$(awk -v b="${bytes[$d]}" 'BEGIN { print b / 1048576 }')"; done
} > "$res/header.txt"
summarize | tee "$res/summary.txt"
echo
echo "raw figures: $raw"
rm -rf "$trash"
