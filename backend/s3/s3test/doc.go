// Package s3test runs real MinIO servers for tests: the S3 backend's own
// conformance tests, and tests of other packages that need one or several
// S3 regions (replication, restore from the best region, a region that goes
// down and comes back).
//
// A test calls [Start], which starts one MinIO on a free 127.0.0.1 port with
// its data under t.TempDir() and stops it by PID when the test ends. Tests
// that share one server across a whole test binary call [Launch] from a
// sync.Once and [Server.Close] from TestMain. With Options.TLS the server
// serves HTTPS with a certificate signed by a CA made for it, whose PEM is
// in [Server.CACertFile]; [Server.Config] fills an s3.Config that trusts it.
//
// The MinIO binary is the pinned one that scripts/minio.sh install builds
// into ~/.cache/vaultbak-tools/bin (or $VAULTBAK_TOOLS/bin), or the one named
// by $VAULTBAK_MINIO. A missing binary or a server that does not come up
// fails the test; it never skips it, so a broken setup cannot pass as green.
//
// Servers run with MINIO_BROWSER=off, a memory limit (512 MiB by default)
// and MinIO's CI mode, so that three can run at once on a small machine. On
// Linux a server is killed when the test binary dies, even without cleanup.
// MinIO's output goes to a log file in the server's directory, printed when
// the test fails or the server does not start.
package s3test
