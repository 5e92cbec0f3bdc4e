package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"vaultbak/backend/faulty"
	"vaultbak/crypt"
)

// oneSnapshot makes a repository with one committed snapshot.
func oneSnapshot(t *testing.T, regions int) (*env, *Snapshot) {
	t.Helper()
	e := newEnv(t, regions, crypt.KindX25519)
	w := newWriter(t, e.repo)
	ids := saveAll(t, w, [][]byte{textBlob(1, 3000)})
	return e, commitTree(t, e.repo, w, "f", ids, testTime)
}

func TestSnapshotsVerifySignatures(t *testing.T) {
	ctx := context.Background()
	e, snap := oneSnapshot(t, 1)
	name := snapshotName(snap.ID)
	good, _ := e.mems[0].Raw(name)

	var sm signedManifest
	if err := json.Unmarshal(good, &sm); err != nil {
		t.Fatal(err)
	}
	if sm.Format != "vaultbak-manifest" || sm.Signer != e.host.Signing.Public() {
		t.Fatalf("stored manifest: format %q signer %s", sm.Format, sm.Signer)
	}
	if sum := sha256.Sum256(sm.Manifest); hex.EncodeToString(sum[:]) != snap.ID {
		t.Fatal("snapshot ID is not the SHA-256 of the signed manifest")
	}

	// restore puts the good manifest back and removes strays.
	restore := func() {
		for _, n := range e.names(0, "snapshots/") {
			e.mems[0].Delete(ctx, n)
		}
		e.mems[0].SetRaw(name, good)
	}
	// store writes a manifest under the name its content hashes to.
	store := func(sm signedManifest) string {
		data, _ := json.Marshal(sm)
		sum := sha256.Sum256(sm.Manifest)
		id := hex.EncodeToString(sum[:])
		e.mems[0].SetRaw(snapshotName(id), data)
		return id
	}
	resign := func(m Manifest, key crypt.SigningKey) signedManifest {
		raw, _ := json.Marshal(&m)
		return signedManifest{Format: manifestFormat, Manifest: raw, Signer: key.Public(), Sig: key.Sign(manifestSignedBytes(raw))}
	}
	edited := func(fn func(*Manifest)) Manifest {
		m := snap.Manifest
		fn(&m)
		return m
	}

	cases := []struct {
		name   string
		plant  func()
		reason string
	}{
		{"a flipped byte in the file", func() {
			i := strings.Index(string(good), `"host`)
			e.mems[0].SetRaw(name, flipAt(good, i+3))
		}, ""},
		{"altered manifest under its old name", func() {
			m := sm
			m.Manifest = []byte(strings.Replace(string(sm.Manifest), `"seq":1`, `"seq":9`, 1))
			data, _ := json.Marshal(m)
			e.mems[0].SetRaw(name, data)
		}, "does not match its name"},
		{"altered manifest renamed to its new hash", func() {
			m := sm
			m.Manifest = []byte(strings.Replace(string(sm.Manifest), `"seq":1`, `"seq":9`, 1))
			store(m)
		}, "signature"},
		{"signed by a key that is not enrolled", func() {
			store(resign(edited(func(m *Manifest) { m.Seq = 2 }), crypt.GenerateSigningKey()))
		}, "not the one enrolled"},
		{"signed as a host that is not enrolled", func() {
			store(resign(edited(func(m *Manifest) { m.Host = "ghost" }), e.host.Signing))
		}, "not enrolled"},
		{"from another repository", func() {
			store(resign(edited(func(m *Manifest) { m.Repository = "0000" }), e.host.Signing))
		}, "belongs to repository"},
		{"a future format version", func() {
			store(resign(edited(func(m *Manifest) { m.Version = 2 }), e.host.Signing))
		}, "version"},
		{"a signature without its domain separation", func() {
			m := sm
			m.Manifest = []byte(strings.Replace(string(sm.Manifest), `"seq":1`, `"seq":3`, 1))
			m.Sig = e.host.Signing.Sign(m.Manifest)
			store(m)
		}, "signature"},
		{"not a manifest", func() { e.mems[0].SetRaw(name, []byte("[]")) }, "malformed"},
		{"wrong format", func() {
			m := sm
			m.Format = "other"
			data, _ := json.Marshal(m)
			e.mems[0].SetRaw(name, data)
		}, "format"},
		{"too large", func() { e.mems[0].SetRaw(name, make([]byte, maxManifestSize+1)) }, ""},
	}
	for _, tc := range cases {
		restore()
		tc.plant()
		for _, keys := range []Keys{{}, e.keysRecovery()} {
			r := e.open(keys)
			_, err := r.Snapshots(ctx)
			if err == nil {
				t.Errorf("%s: Snapshots succeeded", tc.name)
				continue
			}
			if tc.name != "too large" && !isIntegrity(err) {
				t.Errorf("%s: %v, want an IntegrityError", tc.name, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("%s: %v, want a reason containing %q", tc.name, err, tc.reason)
			}
			// check reports it as a problem, without keys too.
			res, err := r.Check(ctx, CheckOptions{})
			if err != nil {
				if tc.name == "too large" {
					continue
				}
				t.Fatalf("%s: check: %v", tc.name, err)
			}
			if len(res.Problems) == 0 {
				t.Errorf("%s: check finds no problem", tc.name)
			}
		}
	}
	restore()
	if s, err := e.open(Keys{}).Snapshots(ctx); err != nil || len(s) != 1 {
		t.Fatalf("restored: %v", err)
	}
}

// A valid manifest copied from another repository (same host name, its own
// valid signature) is rejected.
func TestManifestFromAnotherRepository(t *testing.T) {
	ctx := context.Background()
	a, _ := oneSnapshot(t, 1)
	b, snapB := oneSnapshot(t, 1)
	data, _ := b.mems[0].Raw(snapshotName(snapB.ID))
	a.mems[0].SetRaw(snapshotName(snapB.ID), data)
	_, err := a.open(Keys{}).Snapshots(ctx)
	if !isIntegrity(err) || !strings.Contains(err.Error(), snapB.ID) {
		t.Fatalf("foreign manifest: %v, want an IntegrityError naming it", err)
	}
	// Even when the host key is the same (the credential was enrolled in
	// both), the repository ID in the signed manifest differs.
	if !strings.Contains(err.Error(), "belongs to repository") && !strings.Contains(err.Error(), "not the one enrolled") {
		t.Fatalf("foreign manifest: %v", err)
	}
}

// A region whose copy of a manifest is damaged: the other region's copy is used.
func TestSnapshotsFallBackToAnotherRegion(t *testing.T) {
	ctx := context.Background()
	e, snap := oneSnapshot(t, 2)
	name := snapshotName(snap.ID)
	good, _ := e.mems[0].Raw(name)
	e.mems[0].SetRaw(name, flipAt(good, len(good)/2))
	snaps, err := e.open(Keys{}).Snapshots(ctx)
	if err != nil || len(snaps) != 1 || snaps[0].Region != "r2" {
		t.Fatalf("Snapshots with region 1 damaged: %v", err)
	}
	// Deleted from a region the manifest was committed to: the regions
	// disagree, which is an integrity failure naming that region.
	if len(snap.Regions) != 2 {
		t.Fatalf("manifest names regions %v, want both", snap.Regions)
	}
	e.mems[0].Delete(ctx, name)
	_, err = e.open(Keys{}).Snapshots(ctx)
	var ie *IntegrityError
	if !errors.As(err, &ie) || ie.Region != "r1" {
		t.Fatalf("Snapshots with region 1 hiding it: %v, want an IntegrityError naming r1", err)
	}
}

// A region that was down when a snapshot was committed lags: it is not
// named in the manifest, and lacking the manifest is not tampering.
func TestLaggingRegionIsNotHiding(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, crypt.KindX25519)
	f := faulty.New(e.regions[1].Backend)
	f.AddFault(faulty.OpPut, "", errors.New("region down"), -1)
	regions := []*Region{e.regions[0], {Name: "r2", Backend: f}}
	r, err := Open(ctx, regions, e.keysAll())
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.NewWriter(ctx, WriterOptions{Quorum: 1})
	if err != nil {
		t.Fatal(err)
	}
	ids := saveAll(t, w, [][]byte{randomBlob(21, 9000)})
	snap := commitTree(t, r, w, "f", ids, testTime)
	if len(snap.Regions) != 1 || snap.Regions[0] != "r1" {
		t.Fatalf("manifest names %v, want only r1", snap.Regions)
	}
	snaps, err := e.open(Keys{}).Snapshots(ctx)
	if err != nil || len(snaps) != 1 {
		t.Fatalf("Snapshots with a lagging region: %v", err)
	}
}

func TestPick(t *testing.T) {
	at := func(h int) time.Time { return testTime.Add(time.Duration(h) * time.Hour) }
	snaps := []*Snapshot{
		{ID: "aaaa1111", Manifest: Manifest{Host: "a", Time: at(0), Tags: []string{"daily"}}},
		{ID: "aaaa2222", Manifest: Manifest{Host: "b", Time: at(1), Set: "db"}},
		{ID: "bbbb3333", Manifest: Manifest{Host: "a", Time: at(2), Tags: []string{"daily", "pre-upgrade"}}},
		{ID: "cccc4444", Manifest: Manifest{Host: "a", Time: at(3)}},
		{ID: "dddd5555", Manifest: Manifest{Host: "b", Time: at(3)}}, // same time as cccc: the later in the list wins
	}
	for _, tc := range []struct {
		ref  string
		f    Filter
		want string // "" for an error
	}{
		{"latest", Filter{}, "dddd5555"},
		{"latest", Filter{Host: "a"}, "cccc4444"},
		{"latest", Filter{Tags: []string{"daily"}}, "bbbb3333"},
		{"latest", Filter{Tags: []string{"daily", "pre-upgrade"}}, "bbbb3333"},
		{"latest", Filter{Tags: []string{"weekly"}}, ""},
		{"latest", Filter{Set: "db"}, "aaaa2222"},
		{"latest", Filter{At: at(2)}, "bbbb3333"},                          // at or before: inclusive
		{"latest", Filter{At: at(2).Add(-time.Second)}, "aaaa2222"},        // --at between snapshots
		{"latest", Filter{At: at(0).Add(-time.Nanosecond)}, ""},            // before everything
		{"latest", Filter{At: at(10)}, "dddd5555"},                         // after everything
		{"latest", Filter{Host: "b", At: at(2)}, "aaaa2222"},               // host and time
		{"latest", Filter{Host: "nobody"}, ""},                             // nothing matches
		{"bbbb", Filter{}, "bbbb3333"},                                     // unique prefix
		{"bbbb3333", Filter{}, "bbbb3333"},                                 // whole ID
		{"aaaa", Filter{}, ""},                                             // ambiguous
		{"aaaa1", Filter{}, "aaaa1111"},                                    // longer prefix resolves it
		{"aaaa", Filter{Host: "b"}, "aaaa2222"},                            // a filter resolves it
		{"aaa", Filter{}, ""},                                              // too short
		{"", Filter{}, ""},                                                 // empty
		{"eeee", Filter{}, ""},                                             // not found
		{"bbbb", Filter{Host: "b"}, ""},                                    // filtered out
		{"LATEST", Filter{}, ""},                                           // not the keyword
		{"aaaa11112", Filter{}, ""},                                        // longer than any ID
		{"cccc", Filter{At: at(0)}, ""},                                    // --at goes with latest, not an ID
		{"BBBB", Filter{}, "bbbb3333"},                                     // a prefix in capitals
		{"dddd", Filter{Tags: []string{"daily"}}, ""},                      // tags filter IDs
		{"latest", Filter{Tags: []string{"daily"}, At: at(1)}, "aaaa1111"}, // tags and time
	} {
		got, err := Pick(snaps, tc.ref, tc.f)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("Pick(%q, %+v) = %s, want an error", tc.ref, tc.f, got.ID)
		case tc.want == "" && !errors.Is(err, ErrSnapshotRef):
			t.Errorf("Pick(%q, %+v): %v, want ErrSnapshotRef", tc.ref, tc.f, err)
		case tc.want != "" && err != nil:
			t.Errorf("Pick(%q, %+v): %v, want %s", tc.ref, tc.f, err, tc.want)
		case tc.want != "" && got.ID != tc.want:
			t.Errorf("Pick(%q, %+v) = %s, want %s", tc.ref, tc.f, got.ID, tc.want)
		}
	}
	// The kinds of reference error.
	if _, err := Pick(snaps, "eeee", Filter{}); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("not found: %v, want ErrSnapshotNotFound", err)
	}
	if _, err := Pick(snaps, "latest", Filter{At: at(-1)}); !errors.Is(err, ErrSnapshotNotFound) || !strings.Contains(err.Error(), "at or before") {
		t.Errorf("--at before everything: %v", err)
	}
	if _, err := Pick(snaps, "aaaa", Filter{}); err == nil || !strings.Contains(err.Error(), "ambiguous") || errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("ambiguous: %v", err)
	}
	if _, err := Pick(snaps, "ab", Filter{}); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("too short: %v", err)
	}
	if _, err := Pick(nil, "latest", Filter{}); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("no snapshots: %v", err)
	}
}

func TestFindSnapshot(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, crypt.KindX25519)
	var all []*Snapshot
	for i := range 3 {
		w := newWriter(t, e.repo)
		ids := saveAll(t, w, [][]byte{textBlob(uint64(i), 2000)})
		all = append(all, commitTree(t, e.repo, w, "f", ids, testTime.Add(time.Duration(i)*24*time.Hour)))
	}
	r := e.open(Keys{})
	s, err := r.FindSnapshot(ctx, "latest", Filter{})
	if err != nil || s.ID != all[2].ID {
		t.Fatalf("latest: %v", err)
	}
	s, err = r.FindSnapshot(ctx, "latest", Filter{At: testTime.Add(36 * time.Hour)})
	if err != nil || s.ID != all[1].ID {
		t.Fatalf("latest --at: %v", err)
	}
	s, err = r.FindSnapshot(ctx, all[0].ID[:8], Filter{})
	if err != nil || s.ID != all[0].ID {
		t.Fatalf("prefix: %v", err)
	}
	if _, err := r.FindSnapshot(ctx, "abc", Filter{}); !errors.Is(err, ErrSnapshotRef) {
		t.Fatalf("too short: %v", err)
	}
	if _, err := r.FindSnapshot(ctx, "latest", Filter{At: testTime.Add(-time.Hour)}); !errors.Is(err, ErrSnapshotRef) {
		t.Fatalf("before the first: %v", err)
	}
}

func TestBodyIntegrity(t *testing.T) {
	ctx := context.Background()
	e, snap := oneSnapshot(t, 1)
	r := e.open(e.keysRecovery())
	b, err := r.Body(ctx, snap)
	if err != nil || string(b.Paths[0]) != "/src/f" {
		t.Fatalf("Body: %v", err)
	}
	// A body ID that names another blob (a tree) is refused.
	bad := *snap
	bad.Body = snap.Tree
	if _, err := r.Body(ctx, &bad); !isIntegrity(err) {
		t.Errorf("body naming a tree: %v, want an IntegrityError", err)
	}
}

// TestContentStatsAreSealed: a manifest shows no file count or size; the
// recovery identity reads them from the body, a host credential cannot.
func TestContentStatsAreSealed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, crypt.KindX25519)
	w := newWriter(t, e.repo)
	root, err := w.SaveBlob(ctx, TreeBlob, []byte(`{"nodes":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := w.Commit(ctx, &Manifest{Time: testTime, Tree: root, Stats: Stats{Files: 1, Dirs: 1, Bytes: 123457}}, &ManifestBody{Stream: "db.sql"}, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if !s.StatsKnown || s.Stats.Bytes != 123457 {
		t.Fatalf("committed snapshot stats %+v", s.Stats)
	}
	raw, _ := e.mems[0].Raw(snapshotName(s.ID))
	if bytes.Contains(raw, []byte("123457")) || bytes.Contains(raw, []byte(`"files"`)) {
		t.Fatalf("the manifest shows the content totals: %s", raw)
	}
	for _, c := range []struct {
		keys  Keys
		known bool
	}{{e.keysHost(), false}, {e.keysRecovery(), true}} {
		snaps, err := e.open(c.keys).Snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r := e.open(c.keys)
		if err := r.LoadContentStats(ctx, snaps...); err != nil {
			t.Fatal(err)
		}
		got := snaps[0]
		if got.StatsKnown != c.known || (c.known && (got.Stats.Files != 1 || got.Stats.Bytes != 123457)) || (!c.known && got.Stats.Bytes != 0) {
			t.Errorf("recovery %v: stats known %v %+v", c.keys.Recovery != nil, got.StatsKnown, got.Stats)
		}
	}
}

// TestChainHoleWhereNeverWritten: a snapshot committed while region r2
// was down is missing from r2 by design; r2 read alone still verifies,
// since the next snapshot records that r2 never held it. Deleting it from
// r1, which held it, is still a broken chain.
func TestChainHoleWhereNeverWritten(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, crypt.KindX25519)
	f := faulty.New(e.regions[1].Backend)
	f.AddFault(faulty.OpPut, "", errors.New("region down"), -1)
	degraded, err := Open(ctx, []*Region{e.regions[0], {Name: "r2", Backend: f}}, e.keysAll())
	if err != nil {
		t.Fatal(err)
	}
	defer degraded.Close()
	w, err := degraded.NewWriter(ctx, WriterOptions{Quorum: 1})
	if err != nil {
		t.Fatal(err)
	}
	first := commitTree(t, degraded, w, "a", saveAll(t, w, [][]byte{randomBlob(51, 9000)}), testTime)
	if strings.Join(first.Regions, ",") != "r1" {
		t.Fatalf("first snapshot committed to %v", first.Regions)
	}
	r := e.open(e.keysAll())
	w = newWriter(t, r)
	second := commitTree(t, r, w, "b", saveAll(t, w, [][]byte{randomBlob(52, 9000)}), testTime.Add(time.Hour))
	if second.PrevIn["r1"] != 1 || second.PrevIn["r2"] != 0 {
		t.Fatalf("second snapshot's PrevIn %v", second.PrevIn)
	}

	alone, err := Open(ctx, e.regions[1:], e.keysAll())
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Close()
	if snaps, err := alone.Snapshots(ctx); err != nil || len(snaps) != 1 {
		t.Fatalf("region r2 alone: %d snapshots, %v", len(snaps), err)
	}
	if _, err := e.open(e.keysAll()).Snapshots(ctx); err != nil {
		t.Fatal(err)
	}
	e.mems[0].Delete(ctx, snapshotName(first.ID))
	if _, err := e.open(e.keysAll()).Snapshots(ctx); err == nil || !strings.Contains(err.Error(), "chain is broken") {
		t.Fatalf("the first snapshot deleted from r1, which held it: %v", err)
	}
}
