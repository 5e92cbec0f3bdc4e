package e2e

// The tamper suite: a storage operator (or anyone with write access to a
// region) edits objects directly, in local-directory regions and in MinIO
// regions, and every read path that should notice exits 4 naming what it
// found. A region that merely lagged behind a degraded backup is reported
// as lag (exit 3), never as tampering.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"vaultbak/backend"
	"vaultbak/backend/s3/s3test"
	"vaultbak/crypt"
)

// store is direct access to one region's objects, bypassing vaultbak.
type store interface {
	regionName() string
	listObjects(t *testing.T, prefix string) []string
	get(t *testing.T, name string) []byte
	put(t *testing.T, name string, data []byte)
	del(t *testing.T, name string)
}

type dirStore struct{ name, dir string }

func (s dirStore) regionName() string { return s.name }

func (s dirStore) listObjects(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	for _, p := range objects(t, s.dir, strings.TrimSuffix(prefix, "/")) {
		rel, _ := filepath.Rel(s.dir, p)
		out = append(out, filepath.ToSlash(rel))
	}
	sort.Strings(out)
	return out
}

func (s dirStore) get(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (s dirStore) put(t *testing.T, name string, data []byte) {
	t.Helper()
	p := filepath.Join(s.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s dirStore) del(t *testing.T, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
		t.Fatal(err)
	}
}

type s3Store struct{ r *s3Region }

func (s s3Store) regionName() string { return s.r.name }

func (s s3Store) listObjects(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	for name := range s.r.list(t, prefix) {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func (s s3Store) get(t *testing.T, name string) []byte {
	t.Helper()
	data, err := backend.ReadAll(context.Background(), s.r.backend(t), name, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (s s3Store) put(t *testing.T, name string, data []byte) {
	t.Helper()
	s.r.putRaw(t, name, data)
}

func (s s3Store) del(t *testing.T, name string) {
	t.Helper()
	if err := s.r.backend(t).Delete(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

// tamperRepo is a repository with two snapshots of one host, where the
// second changed only metadata, so that its new packs hold trees and the
// snapshot body only.
type tamperRepo struct {
	e         *repoEnv
	stores    []store
	src       string
	treePacks []string // packs the second backup added
}

func flip(data []byte) []byte {
	out := bytes.Clone(data)
	out[len(out)/2] ^= 0x01
	return out
}

func newTamperRepo(t *testing.T, e *repoEnv, stores []store) *tamperRepo {
	t.Helper()
	tr := &tamperRepo{e: e, stores: stores, src: filepath.Join(e.dir, "src")}
	writeFile(t, filepath.Join(tr.src, "big.bin"), randomBytes(91, 1<<20), 0o644)
	writeFile(t, filepath.Join(tr.src, "notes.txt"), textBytes(92, 8<<10), 0o644)
	e.ok("backup", tr.src)
	before := stores[0].listObjects(t, "data/")
	if err := os.Chmod(filepath.Join(tr.src, "notes.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("backup", tr.src)
	for _, p := range stores[0].listObjects(t, "data/") {
		if !slices.Contains(before, p) {
			tr.treePacks = append(tr.treePacks, p)
		}
	}
	if len(tr.treePacks) == 0 {
		t.Fatal("the second backup added no pack")
	}
	return tr
}

// newestManifest is the second snapshot's manifest object.
func (tr *tamperRepo) newestManifest(t *testing.T) string {
	t.Helper()
	snaps := tr.e.snapshots()
	return "snapshots/" + snaps[len(snaps)-1]["id"].(string)
}

func (tr *tamperRepo) everywhere(t *testing.T, edit func(s store)) {
	for _, s := range tr.stores {
		edit(s)
	}
}

// resign re-signs a stored manifest with key, keeping its content (and so
// its name): what a storage operator holding some signing key can do.
func resign(t *testing.T, data []byte, key crypt.SigningKey) []byte {
	t.Helper()
	var sm map[string]json.RawMessage
	if err := json.Unmarshal(data, &sm); err != nil {
		t.Fatal(err)
	}
	sig := key.Sign(append([]byte("vaultbak manifest v1\n"), sm["manifest"]...))
	sm["signer"], _ = json.Marshal(key.Public())
	sm["sig"], _ = json.Marshal(sig)
	out, err := json.Marshal(sm)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type tamperCase struct {
	name   string
	tamper func(t *testing.T, tr *tamperRepo)
	args   []string // the command that must exit 4 (with the recovery identity)
	want   []string // what its output must name
}

func tamperCases(t *testing.T) []tamperCase {
	foreign := newRepo(t, "f1")
	writeFile(t, filepath.Join(foreign.dir, "x"), []byte("x"), 0o644)
	foreign.ok("backup", filepath.Join(foreign.dir, "x"))
	foreignManifest := objects(t, foreign.regions[0], "snapshots")[0]

	return []tamperCase{
		{"manifest flipped byte", func(t *testing.T, tr *tamperRepo) {
			s := tr.stores[0]
			name := tr.newestManifest(t)
			s.put(t, name, flip(s.get(t, name)))
		}, []string{"check"}, []string{"region %0", "snapshot"}},
		{"index flipped byte", func(t *testing.T, tr *tamperRepo) {
			s := tr.stores[0]
			name := s.listObjects(t, "index/")[0]
			s.put(t, name, flip(s.get(t, name)))
		}, []string{"check"}, []string{"region %0", "index/"}},
		{"tree flipped byte in every region", func(t *testing.T, tr *tamperRepo) {
			tr.everywhere(t, func(s store) {
				for _, p := range tr.treePacks {
					s.put(t, p, flip(s.get(t, p)))
				}
			})
		}, []string{"ls", "latest"}, []string{"region %0", "region %1", "data/"}},
		{"pack flipped byte", func(t *testing.T, tr *tamperRepo) {
			s := tr.stores[0]
			packs := s.listObjects(t, "data/")
			big, size := "", 0
			for _, p := range packs {
				if n := len(s.get(t, p)); n > size {
					big, size = p, n
				}
			}
			s.put(t, big, flip(s.get(t, big)))
		}, []string{"check"}, []string{"region %0", "data/"}},
		{"manifest deleted from one region", func(t *testing.T, tr *tamperRepo) {
			tr.stores[1].del(t, tr.newestManifest(t))
		}, []string{"snapshots"}, []string{"region %1", "missing"}},
		{"newest manifest deleted from every region", func(t *testing.T, tr *tamperRepo) {
			name := tr.newestManifest(t)
			tr.everywhere(t, func(s store) { s.del(t, name) })
		}, []string{"snapshots"}, []string{"rolled back"}},
		{"manifest copied from another repository", func(t *testing.T, tr *tamperRepo) {
			data, err := os.ReadFile(foreignManifest)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(foreign.regions[0], foreignManifest)
			tr.everywhere(t, func(s store) { s.put(t, filepath.ToSlash(rel), data) })
		}, []string{"snapshots"}, []string{"belongs to repository"}},
		{"manifest signed by an unenrolled key", func(t *testing.T, tr *tamperRepo) {
			name := tr.newestManifest(t)
			rogue := crypt.GenerateSigningKey()
			tr.everywhere(t, func(s store) { s.put(t, name, resign(t, s.get(t, name), rogue)) })
		}, []string{"snapshots"}, []string{"not the one enrolled"}},
		{"manifest signed by a revoked host", func(t *testing.T, tr *tamperRepo) {
			e := tr.e
			key2 := filepath.Join(e.dir, "host2.key")
			e.ok(e.withID("host", "enroll", "second", "--out", key2)...)
			e.ok("--host-key", key2, "backup", tr.src)
			writeFile(t, filepath.Join(tr.src, "later.txt"), []byte("later"), 0o644)
			e.ok("--host-key", key2, "backup", tr.src)
			// The second host's newest manifest is withheld while it is
			// revoked, then put back: signed by a revoked host.
			name := tr.newestManifest(t)
			kept := tr.stores[0].get(t, name)
			tr.everywhere(t, func(s store) { s.del(t, name) })
			e.ok(e.withID("host", "revoke", "second")...)
			tr.everywhere(t, func(s store) { s.put(t, name, kept) })
		}, []string{"snapshots"}, []string{"second", "after its revocation"}},
		{"audit record deleted", func(t *testing.T, tr *tamperRepo) {
			records := tr.stores[0].listObjects(t, "audit/")
			if len(records) < 3 {
				t.Fatalf("audit trail holds %d records: %v", len(records), records)
			}
			// The host's second record (its first backup): a hole in its chain.
			var host []string
			for _, r := range records {
				if strings.Contains(r, "-000000000002-") {
					host = append(host, r)
				}
			}
			if len(host) == 0 {
				t.Fatalf("no second record in %v", records)
			}
			tr.everywhere(t, func(s store) { s.del(t, host[0]) })
		}, []string{"audit", "verify"}, []string{"audit record", "missing"}},
	}
}

// runTamperSuite runs every case on a fresh repository from mk, then the
// lag case, which must not be taken for tampering.
func runTamperSuite(t *testing.T, mk func(t *testing.T) (*repoEnv, []store)) {
	for _, c := range tamperCases(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e, stores := mk(t)
			tr := newTamperRepo(t, e, stores)
			e.ok(e.withID("check", "--read-data")...)
			e.ok("audit", "verify")
			c.tamper(t, tr)
			r := e.expect(exitIntegrity, e.withID(c.args...)...)
			for _, w := range c.want {
				w = strings.ReplaceAll(w, "%0", stores[0].regionName())
				w = strings.ReplaceAll(w, "%1", stores[1].regionName())
				requireContains(t, strings.Join(c.args, " ")+" output", r.stderr+r.stdout, w)
			}
		})
	}
}

// lagIsNotTampering backs up while region two is down: exit 3 naming it;
// afterwards reads are clean, check reports lag (3), the audit trail
// verifies, and replicate sync heals it.
func lagIsNotTampering(t *testing.T, e *repoEnv, stores []store, down, up func()) {
	t.Helper()
	tr := newTamperRepo(t, e, stores)
	writeFile(t, filepath.Join(tr.src, "new.bin"), randomBytes(93, 256<<10), 0o644)
	down()
	r := e.expect(exitWarnings, "backup", tr.src)
	requireContains(t, "degraded backup", r.stderr, stores[1].regionName())
	up()
	e.ok("snapshots")
	e.ok(e.withID("ls", "latest")...)
	e.ok("audit", "verify")
	r = e.expect(exitWarnings, "check")
	requireContains(t, "check of a lagging region", r.stderr, stores[1].regionName())
	e.ok("replicate", "sync")
	e.ok("replicate", "status")
	e.ok(e.withID("check", "--read-data")...)
	e.ok("audit", "verify")
}

func TestTamperLocalRegions(t *testing.T) {
	t.Parallel()
	mk := func(t *testing.T) (*repoEnv, []store) {
		e := newRepo(t, "one", "two")
		return e, []store{dirStore{"one", e.regions[0]}, dirStore{"two", e.regions[1]}}
	}
	t.Run("cases", func(t *testing.T) { runTamperSuite(t, mk) })
	t.Run("lag is not tampering", func(t *testing.T) {
		e, stores := mk(t)
		moved := e.regions[1] + ".away"
		lagIsNotTampering(t, e, stores, func() {
			// A region whose directory is gone and whose path is a
			// file: every request to it fails.
			if err := os.Rename(e.regions[1], moved); err != nil {
				t.Fatal(err)
			}
			writeFile(t, e.regions[1], []byte("not a directory"), 0o644)
		}, func() {
			os.Remove(e.regions[1])
			if err := os.Rename(moved, e.regions[1]); err != nil {
				t.Fatal(err)
			}
		})
	})
}

func TestTamperMinIORegions(t *testing.T) {
	t.Parallel()
	servers := startMinIO(t, s3test.Options{}, s3test.Options{})
	var n atomic.Int64
	mk := func(t *testing.T) (*repoEnv, []store) {
		regions := newS3RegionsIn(t, servers, fmt.Sprintf("tamper%d-", n.Add(1)))
		e := newS3Repo(t, 0, regions...)
		return e, []store{s3Store{regions[0]}, s3Store{regions[1]}}
	}
	t.Run("cases", func(t *testing.T) { runTamperSuite(t, mk) })
	t.Run("lag is not tampering", func(t *testing.T) {
		e, stores := mk(t)
		lagIsNotTampering(t, e, stores, func() { servers[1].Stop() }, func() { servers[1].Restart(t) })
	})
}

// TestRestoreFromLaggingRegionAlone is the disaster after a degraded
// backup: region two was down for one backup, came back, took the next
// one, and then region one is lost before any replicate sync. Region two
// alone restores byte for byte, and check --read-data and audit verify
// pass there: what it never held is lag, not a broken chain.
func TestRestoreFromLaggingRegionAlone(t *testing.T) {
	t.Parallel()
	e := newRepo(t, "one", "two")
	src := filepath.Join(e.dir, "src")
	writeRandomFile(t, filepath.Join(src, "a.bin"), 61, 2<<20)
	moved := e.regions[1] + ".away"
	if err := os.Rename(e.regions[1], moved); err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.regions[1], []byte("not a directory"), 0o644)
	e.expect(exitWarnings, "backup", src)
	os.Remove(e.regions[1])
	if err := os.Rename(moved, e.regions[1]); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "b.txt"), textBytes(62, 40<<10), 0o644)
	want := scanTree(t, src)
	e.ok("backup", src)

	alone := filepath.Join(e.dir, "two-only.yaml")
	writeFile(t, alone, []byte("regions:\n  - name: two\n    url: ./region-two\n"), 0o644)
	cfg := runOpts{env: []string{"VAULTBAK_CONFIG=" + alone, "VAULTBAK_CACHE_DIR=" + filepath.Join(e.dir, "other-machine")}}
	target := filepath.Join(e.dir, "restored")
	for _, args := range [][]string{
		e.withID("restore", "latest", "--target", target),
		e.withID("check", "--read-data"),
		{"audit", "verify"},
	} {
		if r := e.runWith(cfg, args...); r.code != exitOK {
			t.Fatalf("region two alone: want exit 0\n%s", r)
		}
	}
	compareTrees(t, want, restoredPath(target, src))
}
