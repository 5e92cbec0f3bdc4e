package repo

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"vaultbak/backend/mem"
	"vaultbak/chunk"
	"vaultbak/crypt"
)

func TestInitValidates(t *testing.T) {
	ctx := context.Background()
	_, x, _ := crypt.GenerateIdentity(crypt.KindX25519)
	_, h, _ := crypt.GenerateIdentity(crypt.KindHybrid)
	regions := func() []*Region { return []*Region{{Name: "r1", Backend: mem.New("r1")}} }
	for name, opts := range map[string]InitOptions{
		"no recovery":     {Host: "h"},
		"mixed kinds":     {Recovery: []string{x, h}, Host: "h"},
		"bad recipient":   {Recovery: []string{"age1nope"}, Host: "h"},
		"secret as recip": {Recovery: []string{"AGE-SECRET-KEY-1QQQ"}, Host: "h"},
		"bad chunker":     {Recovery: []string{x}, Host: "h", Chunker: chunk.Params{Algorithm: "fastcdc-v1.0.0", Min: 10, Avg: 20, Max: 30}},
		"no host":         {Recovery: []string{x}},
		"host with slash": {Recovery: []string{x}, Host: "a/b"},
	} {
		if _, _, err := Init(ctx, regions(), opts); err == nil {
			t.Errorf("%s: Init succeeded", name)
		}
	}
	if _, _, err := Init(ctx, nil, InitOptions{Recovery: []string{x}, Host: "h"}); err == nil {
		t.Error("Init with no regions succeeded")
	}
	// A second Init over an existing repository is refused.
	e := newEnv(t, 2, crypt.KindX25519)
	if _, _, err := Init(ctx, e.regions, InitOptions{Recovery: []string{x}, Host: "h", PackSize: testPackSize, Chunker: testChunker}); err == nil {
		t.Fatal("Init over an existing repository succeeded")
	}
	// Default chunker and pack size make a repository that opens.
	rs := regions()
	if _, _, err := Init(ctx, rs, InitOptions{Recovery: []string{x}, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, rs, Keys{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Config().PackSize != DefaultPackSize || r.Config().Chunker != chunk.DefaultParams() {
		t.Errorf("defaults: pack size %d, chunker %+v", r.Config().PackSize, r.Config().Chunker)
	}
}

// Init must refuse what every later Open refuses: a repository whose config
// no Open accepts is lost the moment it is created.
func TestInitRefusesPackSizeOpenRejects(t *testing.T) {
	ctx := context.Background()
	_, x, _ := crypt.GenerateIdentity(crypt.KindX25519)
	for _, size := range []int{1, 512 << 10, 1<<20 - 1, 1<<30 + 1, -5} {
		rs := []*Region{{Name: "r1", Backend: mem.New("r1")}}
		_, _, err := Init(ctx, rs, InitOptions{Recovery: []string{x}, Host: "h", PackSize: size, Chunker: testChunker})
		if err != nil {
			continue // refused up front: fine
		}
		if _, err := Open(ctx, rs, Keys{}); err != nil {
			t.Errorf("Init accepted pack size %d, but the repository it wrote does not open: %v", size, err)
		}
	}
}

func TestOpenNoRepository(t *testing.T) {
	ctx := context.Background()
	_, err := Open(ctx, []*Region{{Name: "a", Backend: mem.New("a")}, {Name: "b", Backend: mem.New("b")}}, Keys{})
	if !errors.Is(err, ErrNoRepository) {
		t.Fatalf("Open of empty regions: %v, want ErrNoRepository", err)
	}
	if _, err := Open(ctx, nil, Keys{}); err == nil {
		t.Fatal("Open with no regions succeeded")
	}
}

// Roles: a host credential writes but never reads; the recovery identity
// reads; an unrelated identity opens nothing.
func TestKeyRoles(t *testing.T) {
	for _, kind := range []string{crypt.KindX25519, crypt.KindHybrid} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 1, kind)

			// Host only: write a snapshot.
			hr := e.open(e.keysHost())
			if hr.CanRead() || hr.Secrets() == nil {
				t.Fatalf("host-only: CanRead %v, secrets %v", hr.CanRead(), hr.Secrets() != nil)
			}
			w := newWriter(t, hr)
			blobs := [][]byte{textBlob(1, 5000), randomBlob(2, 3000)}
			ids := saveAll(t, w, blobs)
			snap := commitTree(t, hr, w, "f", ids, testTime)

			if _, err := hr.LoadBlob(ctx, ids[0], nil); !errors.Is(err, ErrNeedRecovery) {
				t.Errorf("host-only LoadBlob: %v, want ErrNeedRecovery", err)
			}
			if _, err := hr.LoadTree(ctx, snap.Tree); !errors.Is(err, ErrNeedRecovery) {
				t.Errorf("host-only LoadTree: %v, want ErrNeedRecovery", err)
			}
			if _, err := hr.Body(context.Background(), snap); !errors.Is(err, ErrNeedRecovery) {
				t.Errorf("host-only Body: %v, want ErrNeedRecovery", err)
			}
			if _, err := hr.Check(ctx, CheckOptions{ReadData: true}); !errors.Is(err, ErrNeedRecovery) {
				t.Errorf("host-only Check --read-data: %v, want ErrNeedRecovery", err)
			}
			snaps, err := hr.Snapshots(ctx) // signatures need no key
			if err != nil || len(snaps) != 1 {
				t.Fatalf("host-only Snapshots: %d, %v", len(snaps), err)
			}
			// The host can still deduplicate: it reads the index.
			if !hr.Index().Has(ids[0]) || hr.Index().Len() != 4 { // 2 chunks, the tree, the body
				t.Errorf("host-only index: %d blobs", hr.Index().Len())
			}
			// What the host sealed, the host cannot open: the pack goes to
			// the recovery recipients only.
			packs := e.names(0, "data/")
			raw, _ := e.mems[0].Raw(packs[0])
			if _, err := crypt.Open(raw, 1<<30, []age.Identity{e.host.Writer}); !errors.Is(err, crypt.ErrNoIdentity) {
				t.Errorf("the writer identity opens a pack: %v", err)
			}

			// Recovery: reads everything, cannot write.
			rr := e.open(e.keysRecovery())
			if !rr.CanRead() {
				t.Fatal("recovery: CanRead false")
			}
			checkBlobs(t, rr, ids, blobs)
			tree, err := rr.LoadTree(ctx, snap.Tree)
			if err != nil || len(tree.Nodes) != 1 || string(tree.Nodes[0].Name) != "f" {
				t.Fatalf("recovery LoadTree: %v", err)
			}
			body, err := rr.Body(context.Background(), snap)
			if err != nil || len(body.Paths) != 1 || string(body.Paths[0]) != "/src/f" {
				t.Fatalf("recovery Body: %+v, %v", body, err)
			}
			if _, err := rr.NewWriter(ctx, WriterOptions{}); !errors.Is(err, ErrNeedHostKey) {
				t.Errorf("recovery NewWriter: %v, want ErrNeedHostKey", err)
			}

			// No keys: signatures and hashes only.
			nr := e.open(Keys{})
			if nr.Secrets() != nil || nr.Index().Len() != 0 || nr.CanRead() {
				t.Error("a keyless open has secrets, an index or read access")
			}
			if _, err := nr.LoadBlob(ctx, ids[0], nil); !errors.Is(err, ErrNeedRecovery) {
				t.Errorf("keyless LoadBlob: %v", err)
			}
			if s, err := nr.Snapshots(ctx); err != nil || len(s) != 1 {
				t.Errorf("keyless Snapshots: %v", err)
			}
			if _, err := nr.NewWriter(ctx, WriterOptions{}); !errors.Is(err, ErrNeedHostKey) {
				t.Errorf("keyless NewWriter: %v", err)
			}

			// An unrelated identity opens nothing.
			other, _, _ := crypt.GenerateIdentity(kind)
			if _, err := Open(ctx, e.regions, Keys{Recovery: []age.Identity{other}}); !errors.Is(err, crypt.ErrNoIdentity) {
				t.Errorf("unrelated identity: %v, want crypt.ErrNoIdentity", err)
			}
			// An unrelated recovery identity next to a valid host credential
			// opens the repository (through the host) but reads nothing.
			mixed := e.open(Keys{Recovery: []age.Identity{other}, Host: e.host})
			if _, err := mixed.LoadBlob(ctx, ids[0], nil); !errors.Is(err, ErrNeedRecovery) {
				t.Errorf("unrelated recovery + host LoadBlob: %v, want ErrNeedRecovery", err)
			}
		})
	}
}

func TestOpenRefusesForeignHostCredential(t *testing.T) {
	ctx := context.Background()
	a := newEnv(t, 1, crypt.KindX25519)
	b := newEnv(t, 1, crypt.KindX25519)
	if _, err := Open(ctx, a.regions, Keys{Host: b.host}); err == nil || !strings.Contains(err.Error(), "belongs to repository") {
		t.Errorf("credential of another repository: %v", err)
	}
	// Same name and repository, another signing key: not enrolled.
	forged := *a.host
	forged.Signing = crypt.GenerateSigningKey()
	if _, err := Open(ctx, a.regions, Keys{Host: &forged}); err == nil || !strings.Contains(err.Error(), "not enrolled") {
		t.Errorf("credential with another signing key: %v", err)
	}
	renamed := *a.host
	renamed.Host = "host-b"
	if _, err := Open(ctx, a.regions, Keys{Host: &renamed}); err == nil {
		t.Error("credential of a host that is not enrolled opened the repository")
	}
}

// The config is MACed: a storage operator who enrols a key of its own is
// caught by anyone holding a key.
func TestConfigTamperingIsDetected(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, crypt.KindX25519)
	raw, _ := e.mems[0].Raw("config")
	var f configFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := json.Unmarshal(f.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	evil := crypt.GenerateSigningKey()
	cfg.Hosts = append(cfg.Hosts, HostEntry{Name: "evil", WriterRecipient: cfg.Hosts[0].WriterRecipient, SigningKey: evil.Public(), Enrolled: testTime})
	f.Config, _ = json.Marshal(&cfg)
	tampered, _ := json.Marshal(&f)
	e.mems[0].SetRaw("config", tampered)
	for name, keys := range map[string]Keys{"recovery": e.keysRecovery(), "host": e.keysHost()} {
		_, err := Open(ctx, e.regions, keys)
		if !isIntegrity(err) {
			t.Errorf("%s: Open of a tampered config: %v, want an IntegrityError", name, err)
		}
	}
	// Garbage is an integrity error too, naming the region.
	e.mems[0].SetRaw("config", []byte("{not json"))
	_, err := Open(ctx, e.regions, Keys{})
	var ie *IntegrityError
	if !errors.As(err, &ie) || ie.Region != "r1" || ie.Object != "config" {
		t.Errorf("garbage config: %v", err)
	}
}

func TestDecodeConfig(t *testing.T) {
	s := newSecrets(crypt.NewKey())
	good := &Config{Version: FormatVersion, ID: "abc", Chunker: testChunker, PackSize: testPackSize, Compression: "zstd", KeyKind: crypt.KindX25519, Recovery: []string{"age1x"}}
	data, err := encodeConfig(good, s)
	if err != nil {
		t.Fatal(err)
	}
	c, f, err := decodeConfig(data)
	if err != nil || c.ID != "abc" || !verifyConfig(f, s) {
		t.Fatalf("decodeConfig: %v", err)
	}
	if verifyConfig(f, newSecrets(crypt.NewKey())) {
		t.Error("the MAC verifies under other secrets")
	}
	mutate := func(fn func(*Config)) []byte {
		c := *good
		fn(&c)
		d, _ := encodeConfig(&c, s)
		return d
	}
	for name, d := range map[string][]byte{
		"empty":         nil,
		"not json":      []byte("config"),
		"wrong format":  []byte(strings.Replace(string(data), "vaultbak-config", "vaultbak-other", 1)),
		"version 2":     mutate(func(c *Config) { c.Version = 2 }),
		"version 0":     mutate(func(c *Config) { c.Version = 0 }),
		"bad chunker":   mutate(func(c *Config) { c.Chunker.Avg = 3000 }),
		"pack too big":  mutate(func(c *Config) { c.PackSize = 1<<30 + 1 }),
		"pack too tiny": mutate(func(c *Config) { c.PackSize = 1000 }),
		"config string": []byte(`{"format":"vaultbak-config","config":"x","mac":""}`),
	} {
		if _, _, err := decodeConfig(d); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	// Members of the config and its host list.
	good.Hosts = []HostEntry{{Name: "a", WriterRecipient: "w1"}, {Name: "b", WriterRecipient: "w2", Revoked: &testTime}}
	if w := good.Writers(); len(w) != 1 || w[0] != "w1" {
		t.Errorf("Writers = %v", w)
	}
	if h, ok := good.Host("b"); !ok || h.WriterRecipient != "w2" {
		t.Error("Host(b)")
	}
	if _, ok := good.Host("c"); ok {
		t.Error("Host(c) found")
	}
}

// Threat model: a storage operator "cannot forge ... a snapshot without the
// restore or drill detecting it". Everything the operator needs to build a
// consistent repository of its own is public: the recovery and writer
// recipients are in the config, and age lets anyone seal to a recipient. So
// it can seal a new master key to them, MAC a config that enrols a host of
// its own with that key, drop the real keys file, and commit a snapshot
// through this very library. The recovery holder must not open that
// repository as if nothing happened.
// A storage operator can seal new secrets to the public recipients and write
// a config of its own. The repository ID belongs to the master key, so the
// replaced repository has another ID: the real hosts (their credential names
// the ID) and a recovery holder who pinned the ID refuse it.
func TestSwappedSecretsAreDetected(t *testing.T) {
	ctx := context.Background()
	e, legit := oneSnapshot(t, 1)
	m := e.mems[0]
	realID := e.open(e.keysRecovery()).Config().ID

	// The operator: public objects only.
	raw, _ := m.Raw("config")
	cfg, _, err := decodeConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	secrets := newSecrets(crypt.NewKey())
	cfg.ID = secrets.RepositoryID()
	evil, err := crypt.NewHostCredential("host-a2", cfg.ID, cfg.KeyKind)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Hosts = append(cfg.Hosts, HostEntry{Name: evil.Host, WriterRecipient: evil.WriterRecipient, SigningKey: evil.Signing.Public(), Enrolled: testTime})
	recips, _, err := crypt.ParseRecipients(append(append([]string(nil), cfg.Recovery...), cfg.Writers()...))
	if err != nil {
		t.Fatal(err)
	}
	sealed, name, err := sealSecrets(secrets, recips)
	if err != nil {
		t.Fatal(err)
	}
	// Everything real goes: keys, index files and the real manifests.
	for _, n := range append(append(e.names(0, "keys/"), e.names(0, "index/")...), e.names(0, "snapshots/")...) {
		m.Delete(ctx, n)
	}
	m.SetRaw(name, sealed)
	cfgData, err := encodeConfig(cfg, secrets)
	if err != nil {
		t.Fatal(err)
	}
	m.SetRaw("config", cfgData)
	fr, err := Open(ctx, e.regions, Keys{Host: evil})
	if err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, fr)
	ids := saveAll(t, w, [][]byte{[]byte("forged content the victim will restore\n")})
	commitTree(t, fr, w, "f", ids, testTime.Add(time.Hour))

	// The real host notices at its next backup.
	if _, err := Open(ctx, e.regions, e.keysHost()); err == nil || !strings.Contains(err.Error(), "belongs to repository") {
		t.Errorf("real host on a replaced repository: %v", err)
	}
	// The victim, at 3 a.m., with the recovery identity and the pinned ID.
	pinned := e.keysRecovery()
	pinned.ExpectID = realID
	if _, err := Open(ctx, e.regions, pinned); !isIntegrity(err) {
		t.Errorf("replaced repository opened with the real ID pinned: %v, want an IntegrityError", err)
	}
	_ = legit
}
