// Package metrics writes Prometheus textfiles, the format node_exporter's
// textfile collector reads: gauges set by name and labels, written to a
// temporary file in the target's directory and renamed over it (so the
// collector never reads half a file), mode 0644 so that node_exporter,
// running as another user, can read it.
//
// Read parses a previous textfile with Prometheus's own parser, so that a
// value a run cannot recompute (the time of the last success, after a
// failed run) carries over from the file the previous run wrote.
//
// What the gauges mean is the caller's business (cmd/vaultbak/metrics.go
// names vaultbak's); this package knows nothing of backups.
package metrics
