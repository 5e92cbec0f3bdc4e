# summary.awk reads results/raw.tsv of scripts/bench/run.sh and prints one
# table of medians with the ratios to restic and to the machine's limit,
# then the acceptance checks of issue 8 (ok / FAIL / n/a per line).
#
# raw.tsv columns: tool target dataset step rep wall_s cpu_s rss_kib bytes
# repo_bytes growth_bytes changed_bytes

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
	return sprintf("%.2f-%.2f", lo, hi)
}
function mib(x) { return x == "-" || x == "" ? "-" : sprintf("%.1f", x / 1048576) }
function ratio(a, b) { return (a == "" || b == "" || b + 0 <= 0) ? "-" : sprintf("%.2f", a / b) }
# limit returns the reference step that bounds a step on dataset d.
function limit(d, s) {
	if (s == "restore") return "cp-a"
	if (d == "tree") return "tar|cat"
	if (d == "big") return "cat"
	if (d == "pg") return "pg_dump|cat"
	return ""
}
function key(tool, target, d, s) { return tool SUBSEP target SUBSEP d SUBSEP s }
# check prints one acceptance line: what, the measured ratio, the bound.
function check(what, got, bound) {
	if (got == "-" || got == "") { printf "  n/a   %-62s (not measured)\n", what; return }
	printf "  %-5s %-62s %6s  (bound %s)\n", (got + 0 <= bound + 0 ? "ok" : "FAIL"), what, got, bound
	if (got + 0 > bound + 0) failed++
}
function order(list, x,   n, a, i) {
	n = split(list, a, " ")
	for (i = 1; i <= n; i++) if (a[i] == x) return i
	return n + 1
}

NR == 1 { next }
{
	k = key($1, $2, $3, $4)
	if (!(k in cnt)) { keys[++nk] = k; bytes[k] = $9; changed[k] = $12 }
	sep = cnt[k]++ ? "," : ""
	wall[k] = wall[k] sep $6; cpu[k] = cpu[k] sep $7; rss[k] = rss[k] sep $8
	repo[k] = repo[k] sep $10; grow[k] = grow[k] sep $11
}
END {
	# Rows by dataset, then step, then target, then tool: what to compare
	# is adjacent.
	for (i = 1; i <= nk; i++) {
		split(keys[i], f, SUBSEP)
		rank[i] = sprintf("%02d%02d%02d%02d", order("tree big pg", f[3]), order("tar|cat cat pg_dump|cat cp-a backup nochange change restore", f[4]), order("- local minio minio3", f[2]), order("ref vaultbak restic borg", f[1]))
		W[keys[i]] = median(wall[keys[i]]); C[keys[i]] = median(cpu[keys[i]]); R[keys[i]] = median(rss[keys[i]])
		S[keys[i]] = median(repo[keys[i]]); G[keys[i]] = median(grow[keys[i]])
	}
	for (i = 1; i <= nk; i++) idx[i] = i
	for (i = 2; i <= nk; i++) { t = idx[i]; for (j = i - 1; j >= 1 && rank[idx[j]] > rank[t]; j--) idx[j + 1] = idx[j]; idx[j + 1] = t }

	printf "%-8s %-6s %-4s %-11s %7s %11s %8s %7s %7s %9s %8s %8s %6s\n", "tool", "target", "data", "step", "wall s", "(min-max)", "MB/s", "cpu s", "rss MiB", "repo MiB", "growth", "xrestic", "xlimit"
	for (n = 1; n <= nk; n++) {
		k = keys[idx[n]]; split(k, f, SUBSEP)
		if (n > 1 && f[3] != prev) print ""
		prev = f[3]
		w = W[k]
		vs = f[1] == "ref" || f[1] == "restic" ? "" : ratio(w, W[key("restic", f[2], f[3], f[4])])
		lim = f[1] == "ref" ? "" : ratio(w, W[key("ref", "-", f[3], limit(f[3], f[4]))])
		printf "%-8s %-6s %-4s %-11s %7.2f %11s %8s %7.2f %7.0f %9s %8s %8s %6s\n", f[1], f[2], f[3], f[4], w, range(wall[k]), (w > 0 ? sprintf("%.1f", bytes[k] / w / 1e6) : "-"), C[k], R[k] / 1024, mib(S[k]), mib(G[k]), vs, lim
	}

	print ""
	print "acceptance (issue 8): vaultbak wall time / restic's, medians of the same run"
	split("local minio", tg, " ")
	bound["backup", "tree", "local"] = 0.45; bound["backup", "big", "local"] = 0.55
	bound["backup", "tree", "minio"] = 0.50; bound["backup", "big", "minio"] = 0.67
	bound["nochange", "tree"] = 0.25; bound["nochange", "big"] = 0.70
	bound["restore", "tree"] = 0.60; bound["restore", "big"] = 0.50
	for (t = 1; t <= 2; t++) {
		T = tg[t]
		for (d = 1; d <= 2; d++) {
			D = d == 1 ? "tree" : "big"
			check("initial backup, " T ", " D, ratio(W[key("vaultbak", T, D, "backup")], W[key("restic", T, D, "backup")]), bound["backup", D, T])
			check("no-change re-backup, " T ", " D, ratio(W[key("vaultbak", T, D, "nochange")], W[key("restic", T, D, "nochange")]), bound["nochange", D])
			check("full restore, " T ", " D, ratio(W[key("vaultbak", T, D, "restore")], W[key("restic", T, D, "restore")]), bound["restore", D])
		}
		for (s = 1; s <= 2; s++) {
			S1 = s == 1 ? "backup" : "nochange"
			check(S1 " of the pg_dump stream, " T ", / pg_dump|cat", ratio(W[key("vaultbak", T, "pg", S1)], W[key("ref", "-", "pg", "pg_dump|cat")]), 1.15)
		}
		k = key("vaultbak", T, "big", "change")
		check("growth after the 1% change, " T ", / changed bytes", ratio(G[k], changed[k]), 2.0)
		check("growth after the 1% change, " T ", / restic's growth", ratio(G[k], G[key("restic", T, "big", "change")]), 1.0)
	}
	for (d = 1; d <= 3; d++) {
		D = d == 1 ? "tree" : d == 2 ? "big" : "pg"
		check("three MinIO regions, " D ", / restic backup + 2 copies", ratio(W[key("vaultbak", "minio3", D, "backup")], W[key("restic", "minio3", D, "backup")]), 0.5)
		check("three MinIO regions, " D ", / vaultbak into one", ratio(W[key("vaultbak", "minio3", D, "backup")], W[key("vaultbak", "minio", D, "backup")]), 1.3)
	}
	for (n = 1; n <= nk; n++) {
		k = keys[idx[n]]; split(k, f, SUBSEP)
		if (f[1] != "vaultbak" || f[2] == "minio3") continue
		check("peak RSS " f[2] " " f[3] " " f[4] ", MiB", sprintf("%.0f", R[k] / 1024), 128)
		o = key("restic", f[2], f[3], f[4])
		if (o in R) check("peak RSS " f[2] " " f[3] " " f[4] ", / restic's", ratio(R[k], R[o]), 1.0)
	}
	printf "%d check(s) failed\n", failed
}
