package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// replicateDamageRepo backs up a small tree into regions one and two and
// returns the snapshot's object name and the path of its manifest in each
// region.
func replicateDamageRepo(t *testing.T) (e *repoEnv, manifest string, paths []string) {
	t.Helper()
	e = newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, "f"), textBytes(41, 32<<10), 0o644)
	e.ok("backup", src)
	snaps := objects(t, e.regions[0], "snapshots")
	if len(snaps) != 1 {
		t.Fatalf("want one manifest, got %v", snaps)
	}
	manifest = "snapshots/" + filepath.Base(snaps[0])
	for _, r := range e.regions {
		paths = append(paths, filepath.Join(r, filepath.FromSlash(manifest)))
	}
	return e, manifest, paths
}

// TestReplicateBlamesDamagedManifest: a manifest truncated in one region
// (listed first or second) is blamed on that region, never the other;
// status exits 4; sync replaces it from the intact copy and exits 0.
func TestReplicateBlamesDamagedManifest(t *testing.T) {
	t.Parallel()
	for bad, name := range []string{"one", "two"} {
		t.Run("damaged in "+name, func(t *testing.T) {
			t.Parallel()
			e, manifest, paths := replicateDamageRepo(t)
			if err := os.Truncate(paths[bad], 300); err != nil {
				t.Fatal(err)
			}
			good := e.names[1-bad]
			r := e.expect(exitIntegrity, "replicate", "status")
			requireContains(t, "replicate status", r.stderr, fmt.Sprintf("region %s: %s", name, manifest))
			requireContains(t, "replicate status", r.stdout, fmt.Sprintf("region %s: ", name))
			for _, line := range strings.Split(r.stdout, "\n") {
				if strings.HasPrefix(line, "region "+good+":") && !strings.Contains(line, "in sync") {
					t.Errorf("replicate status blames region %s, whose copy is intact: %q", good, line)
				}
				if strings.HasPrefix(line, "region "+name+":") && !strings.Contains(line, "damaged") {
					t.Errorf("replicate status does not say region %s holds a damaged copy: %q", name, line)
				}
			}
			if strings.Contains(r.stderr, "region "+good+":") {
				t.Errorf("replicate status names region %s, whose copy is intact:\n%s", good, r)
			}
			r = e.ok("replicate", "sync")
			requireContains(t, "replicate sync", r.stdout, "copied 1 object(s)")
			a, b := readFile(t, paths[0]), readFile(t, paths[1])
			if !bytes.Equal(a, b) {
				t.Fatalf("after sync the two copies of %s differ (%d and %d bytes)", manifest, len(a), len(b))
			}
			e.ok("replicate", "status")
			e.ok("check")
		})
	}
}

// TestReplicateVerifyFindsFlippedByte: a flipped byte keeps the size, so
// listing does not see it (status exits 0); --verify reads every copy,
// names the region and the pack, and sync --verify heals it.
func TestReplicateVerifyFindsFlippedByte(t *testing.T) {
	t.Parallel()
	e, _, _ := replicateDamageRepo(t)
	pack := damageLargestPack(t, e.regions[1])
	e.ok("replicate", "status")
	r := e.expect(exitIntegrity, "replicate", "status", "--verify")
	requireContains(t, "replicate status --verify", r.stderr, "region two: "+pack)
	if strings.Contains(r.stderr, "region one:") {
		t.Errorf("replicate status --verify names region one, whose copy is intact:\n%s", r)
	}
	e.expect(exitIntegrity, "check")
	r = e.ok("replicate", "sync", "--verify")
	requireContains(t, "replicate sync --verify", r.stdout, "copied 1 object(s)")
	e.ok("replicate", "status", "--verify")
	e.ok("check")
}

// TestReplicateDamagedEverywhere: with no intact copy anywhere, status and
// sync exit 4 naming the object, and sync writes nothing.
func TestReplicateDamagedEverywhere(t *testing.T) {
	t.Parallel()
	e, manifest, paths := replicateDamageRepo(t)
	for i, p := range paths {
		if err := os.Truncate(p, int64(200+100*i)); err != nil {
			t.Fatal(err)
		}
	}
	r := e.expect(exitIntegrity, "replicate", "status")
	requireContains(t, "replicate status", r.stderr, manifest+": no region holds an intact copy")
	r = e.expect(exitIntegrity, "replicate", "sync")
	requireContains(t, "replicate sync", r.stderr, manifest+": no region holds an intact copy")
	for i, p := range paths {
		if n := len(readFile(t, p)); n != 200+100*i {
			t.Errorf("region %s's damaged copy was rewritten by sync: %d bytes", e.names[i], n)
		}
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
