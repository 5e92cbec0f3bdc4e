package backup

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"vaultbak/backend"
	"vaultbak/backend/faulty"
	"vaultbak/repo"
)

// A chunk that cannot be stored stops the backup: workers go on to the
// next file while the chunks of the last one are stored, so the failure
// reaches the backup through the save itself. Here every pack upload
// fails; the backup returns that error, soon, and commits nothing.
func TestChunkSaveFailureStopsBackup(t *testing.T) {
	e := newDirEnv(t)
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 1<<20)
	for i := range 40 { // 40 MiB of random data: more than two packs
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		e.write("big/f"+string(rune('a'+i%26))+string(rune('a'+i/26)), string(data))
	}
	regions := e.regions()
	flt := faulty.New(regions[0].Backend)
	errInjected := errors.New("injected: disk full")
	r, err := repo.Open(context.Background(), regions, repo.Keys{Host: e.host})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	regions[0].Backend = flt // after Open: the faults hit the backup only
	flt.AddFault(faulty.OpPut, "data/", errInjected, -1)

	done := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), r, Options{Paths: []string{e.src}}, nil)
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("backup still running a minute after every pack upload failed")
	}
	if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
		t.Fatalf("backup returned %v, want the upload error %q", err, errInjected)
	}
	be := e.regions()[0].Backend
	if err := be.List(context.Background(), "snapshots/", func(i backend.Info) error {
		return errors.New("snapshot committed: " + i.Name)
	}); err != nil {
		t.Fatal(err)
	}
}
