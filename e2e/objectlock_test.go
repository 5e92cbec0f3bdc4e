package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"vaultbak/backend/s3/s3test"
)

// TestObjectLock: init --object-lock creates the S3 region's bucket with
// Object Lock and says which region cannot hold locks (a local directory).
// A backup then stores every pack, index file, manifest and audit record
// in the bucket retained in governance mode for the period from its write,
// and neither the config nor the key file; a locked version cannot be
// deleted by a client holding the bucket's credentials; restore and check
// work as ever; a manifest hidden behind a delete marker is reported and
// replicate sync writes it back, locked. init refuses an existing bucket created without Object
// Lock (with a hint), and a malformed --object-lock (exit 2).
func TestObjectLock(t *testing.T) {
	t.Parallel()
	srv := startMinIO(t, s3test.Options{})[0]
	regs := newS3RegionsIn(t, []*s3test.Server{srv}, "locked")
	r1 := regs[0]
	dir := t.TempDir()
	e := repoEnvIn(t, dir)
	e.names = []string{r1.name, "usb"}
	e.regions = []string{"", filepath.Join(dir, "region-usb")}
	config := func(r *s3Region) string {
		return fmt.Sprintf("regions:\n  - name: %s\n    url: %s\n    access_key_id_env: %s\n    secret_access_key_env: %s\n  - name: usb\n    url: ./region-usb\ncache_dir: ./cache\n", r.name, r.url, r.keyEnv, r.secEnv)
	}
	writeFile(t, e.config, []byte(config(r1)), 0o644)
	e.ok("keygen", "--out", e.recovery)

	r := e.expect(exitUsage, "init", "--recovery-recipient-file", e.recovery, "--object-lock", "forever")
	requireContains(t, "init --object-lock forever", r.stderr, "hint:")
	start := time.Now()
	r = e.ok("init", "--recovery-recipient-file", e.recovery, "--host", "e2e-host", "--object-lock", "governance:2d")
	requireContains(t, "init with Object Lock", r.stdout, "Object Lock: governance, 2 day(s)")
	requireContains(t, "init with Object Lock", r.stdout, "not locked: region(s) usb")

	src := filepath.Join(dir, "src")
	mixedTree(t, src, 7, 3<<20)
	want := scanTree(t, src)
	e.backupJSON(exitOK, src)

	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := map[string]int{}
	var packVersion, pack string
	for obj := range c.ListObjects(ctx, r1.bucket, minio.ListObjectsOptions{Prefix: r1.prefix + "/", Recursive: true, WithVersions: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		name := strings.TrimPrefix(obj.Key, r1.prefix+"/")
		kind, _, _ := strings.Cut(name, "/")
		seen[kind]++
		mode, until, err := c.GetObjectRetention(ctx, r1.bucket, obj.Key, obj.VersionID)
		switch kind {
		case "data", "index", "snapshots", "audit":
			if err != nil || mode == nil || *mode != minio.Governance {
				t.Errorf("%s is not retained in governance mode: %v, %v", name, mode, err)
				continue
			}
			if d := until.Sub(start); d < 48*time.Hour-time.Minute || d > 48*time.Hour+5*time.Minute {
				t.Errorf("%s is retained until %v, %v after init; want 2 days after its write", name, until, d)
			}
			if kind == "data" {
				pack, packVersion = obj.Key, obj.VersionID
			}
		default: // config, keys: key rotation must be able to retire them
			if mode != nil {
				t.Errorf("%s is retained (%s), but only history is locked", name, *mode)
			}
		}
	}
	for _, kind := range []string{"data", "index", "snapshots", "audit", "config", "keys"} {
		if seen[kind] == 0 {
			t.Errorf("region %s holds no %s object: %v", r1.name, kind, seen)
		}
	}
	if err := c.RemoveObject(ctx, r1.bucket, pack, minio.RemoveObjectOptions{VersionID: packVersion}); err == nil {
		t.Errorf("a client with the bucket's credentials deleted the locked pack %s", pack)
	}

	restoreJSON(t, e, "", src, want)
	r = e.ok("check")
	requireContains(t, "check of a locked repository", r.stdout, "Object Lock: governance, 2 day(s) from each write; not locked: region(s) usb")

	// A client with the credentials can hide a locked manifest behind a
	// delete marker: a read reports it missing where it was committed, and
	// replicate sync brings it back from the local region, locked again.
	manifest := ""
	for obj := range c.ListObjects(ctx, r1.bucket, minio.ListObjectsOptions{Prefix: r1.prefix + "/snapshots/", Recursive: true}) {
		manifest = obj.Key
	}
	if err := c.RemoveObject(ctx, r1.bucket, manifest, minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("delete marker over %s: %v", manifest, err)
	}
	r = e.expect(exitIntegrity, "snapshots")
	requireContains(t, "snapshots with the manifest hidden in "+r1.name, r.stderr, "region "+r1.name)
	e.ok("replicate", "sync")
	info, err := c.StatObject(ctx, r1.bucket, manifest, minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("%s after replicate sync: %v", manifest, err)
	}
	if mode, _, err := c.GetObjectRetention(ctx, r1.bucket, manifest, info.VersionID); err != nil || mode == nil || *mode != minio.Governance {
		t.Errorf("the copy replicate sync wrote of %s is not locked: %v, %v", manifest, mode, err)
	}
	e.ok("check")

	// A lock no region can hold is refused, before anything is created.
	e3 := repoEnvIn(t, t.TempDir())
	writeFile(t, e3.config, []byte("regions:\n  - name: disk\n    url: ./region-disk\n"), 0o644)
	e3.ok("keygen", "--out", e3.recovery)
	r = e3.expect(exitUsage, "init", "--recovery-recipient-file", e3.recovery, "--object-lock", "governance:1d")
	requireContains(t, "init --object-lock with local regions only", r.stderr, "no region of")
	if _, err := os.Stat(filepath.Join(e3.dir, "region-disk")); err == nil {
		t.Errorf("the refused init created the region directory")
	}

	// An existing bucket made without Object Lock cannot get it later.
	if err := c.MakeBucket(ctx, "plain1", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	plain := r1.clone()
	plain.bucket, plain.url = "plain1", srv.URL("plain1", "vb")
	e2 := repoEnvIn(t, t.TempDir())
	writeFile(t, e2.config, []byte(config(plain)), 0o644)
	e2.ok("keygen", "--out", e2.recovery)
	r = e2.expect(exitFailure, "init", "--recovery-recipient-file", e2.recovery, "--object-lock", "compliance:1d")
	requireContains(t, "init into a bucket without Object Lock", r.stderr, "created without Object Lock")
	requireContains(t, "init into a bucket without Object Lock", r.stderr, "hint:")
	if _, err := os.Stat(e2.hostKey); err == nil {
		t.Errorf("the refused init wrote a host credential")
	}
}
