package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vaultbak/backend"
	"vaultbak/backend/mem"
	"vaultbak/crypt"
)

// lockRecorder is a memory region that says whether it can hold locks and
// records the lock it is given.
type lockRecorder struct {
	*mem.Mem
	refuse error // from CheckLock

	mu   sync.Mutex
	lock *backend.Lock
}

func (l *lockRecorder) SetLock(lk backend.Lock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lock = &lk
}

func (l *lockRecorder) CheckLock(context.Context) error { return l.refuse }

func (l *lockRecorder) got() *backend.Lock {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lock
}

// TestObjectLockApplied: a repository initialised with an ObjectLock
// records it in its config, and every region that can hold locks is given
// it at Init and at every Open, covering the history (packs, index files,
// manifests, audit records) but not the config or key files; a region
// that cannot is named by Unlocked. Init refuses a region whose storage
// cannot hold locks before writing anything, and a lock it cannot apply.
func TestObjectLockApplied(t *testing.T) {
	ctx := context.Background()
	_, rec, err := crypt.GenerateIdentity(crypt.KindX25519)
	if err != nil {
		t.Fatal(err)
	}
	locker := &lockRecorder{Mem: mem.New("r1")}
	plain := mem.New("r2")
	regions := []*Region{{Name: "r1", Backend: locker}, {Name: "r2", Backend: plain}}
	opts := InitOptions{Recovery: []string{rec}, Host: "host-a", Chunker: testChunker, PackSize: testPackSize, Now: testTime, ObjectLock: &ObjectLock{Mode: backend.LockGovernance, Days: 3}}
	r, host, err := Init(ctx, regions, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	check := func(when string) {
		t.Helper()
		l := locker.got()
		if l == nil || l.Mode != backend.LockGovernance || l.Period != 72*time.Hour {
			t.Fatalf("%s: region r1 was given lock %+v, want governance for 72h", when, l)
		}
		for name, want := range map[string]bool{"data/ab/ab12": true, "index/ab12": true, "snapshots/ab12": true, "audit/x-000000000001-ab": true, "config": false, "keys/ab12": false} {
			if l.Covers(name) != want {
				t.Errorf("%s: the lock covers %s: %v, want %v", when, name, !want, want)
			}
		}
	}
	check("init")

	locker.SetLock(backend.Lock{})
	r, err = Open(ctx, regions, Keys{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	check("open")
	if got := r.Config().ObjectLock; got == nil || *got != *opts.ObjectLock {
		t.Errorf("config holds lock %+v, want %+v", got, opts.ObjectLock)
	}
	if un := r.Unlocked(); !slices.Equal(un, []string{"r2"}) {
		t.Errorf("Unlocked() = %v, want [r2]", un)
	}
	// check warns when a region's storage can no longer hold the lock.
	locker.refuse = fmt.Errorf("bucket replaced: %w", backend.ErrNoLock)
	res, err := r.Check(ctx, CheckOptions{})
	if err != nil || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "region r1 cannot hold the repository's Object Lock") {
		t.Errorf("check of a region that cannot hold the lock: %+v, %v", res, err)
	}
	locker.refuse = nil

	refusing := &lockRecorder{Mem: mem.New("r3"), refuse: fmt.Errorf("bucket made without Object Lock: %w", backend.ErrNoLock)}
	fresh := mem.New("r4")
	_, _, err = Init(ctx, []*Region{{Name: "r4", Backend: fresh}, {Name: "r3", Backend: refusing}}, opts)
	if !errors.Is(err, backend.ErrNoLock) {
		t.Fatalf("Init into a region that cannot hold locks: %v, want ErrNoLock", err)
	}
	for _, m := range []*mem.Mem{refusing.Mem, fresh} {
		n := 0
		m.List(ctx, "", func(backend.Info) error { n++; return nil })
		if n != 0 {
			t.Errorf("the refused Init wrote %d objects", n)
		}
	}
	for _, bad := range []ObjectLock{{Mode: "forever", Days: 1}, {Mode: backend.LockCompliance, Days: 0}} {
		opts.ObjectLock = &bad
		if _, _, err := Init(ctx, []*Region{{Name: "r5", Backend: mem.New("r5")}}, opts); err == nil {
			t.Errorf("Init with lock %+v succeeded", bad)
		}
	}
}

// TestApplyObjectLock: keyless writers (replicate sync) take the lock from
// the regions' stored configs, which must all name the same one: a region whose
// copy weakens the lock is an integrity failure and no lock is given.
func TestApplyObjectLock(t *testing.T) {
	ctx := context.Background()
	_, rec, err := crypt.GenerateIdentity(crypt.KindX25519)
	if err != nil {
		t.Fatal(err)
	}
	one, two := &lockRecorder{Mem: mem.New("r1")}, &lockRecorder{Mem: mem.New("r2")}
	regions := []*Region{{Name: "r1", Backend: one}, {Name: "r2", Backend: two}}
	lock := &ObjectLock{Mode: backend.LockCompliance, Days: 30}
	r, _, err := Init(ctx, regions, InitOptions{Recovery: []string{rec}, Host: "host-a", Chunker: testChunker, PackSize: testPackSize, Now: testTime, ObjectLock: lock})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	one.SetLock(backend.Lock{})
	two.SetLock(backend.Lock{})
	configs, err := ReadStoredConfigs(ctx, regions)
	if err != nil {
		t.Fatal(err)
	}
	if err := ApplyObjectLock(regions, configs); err != nil {
		t.Fatal(err)
	}
	for _, l := range []*lockRecorder{one, two} {
		if got := l.got(); got.Mode != backend.LockCompliance || got.Period != 30*24*time.Hour {
			t.Errorf("agreeing configs: lock %+v given", got)
		}
	}

	// Region r2 serves a config whose lock is a day in governance mode.
	data, _ := two.Raw("config")
	cfg, f, err := decodeConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ObjectLock = &ObjectLock{Mode: backend.LockGovernance, Days: 1}
	if f.Config, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	forged, _ := json.Marshal(f)
	if err := two.Put(ctx, "config", forged); err != nil {
		t.Fatal(err)
	}
	one.SetLock(backend.Lock{})
	two.SetLock(backend.Lock{})
	if configs, err = ReadStoredConfigs(ctx, regions); err != nil {
		t.Fatal(err)
	}
	err = ApplyObjectLock(regions, configs)
	var ie *IntegrityError
	if !errors.As(err, &ie) || ie.Region != "r2" {
		t.Fatalf("a region weakening the lock: %v, want an integrity error naming r2", err)
	}
	if got := one.got(); got.Mode != "" {
		t.Errorf("a lock (%+v) was given though the configs disagree", got)
	}
}
