package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vaultbak/backend/local"
	"vaultbak/chunk"
	"vaultbak/crypt"
	"vaultbak/repo"
)

// A strict backup stopped by a warning fails with that warning (ErrStrict,
// naming the file), never with the "context canceled" of the saves and
// trees it interrupted: small packs keep uploads and tree saves in flight
// when a file that grows all the time exhausts its reads.
func TestStrictFailureNamesFile(t *testing.T) {
	for run := range 8 {
		dir := t.TempDir()
		be, err := local.New(filepath.Join(dir, "region"))
		if err != nil {
			t.Fatal(err)
		}
		regions := []*repo.Region{{Name: "region", Backend: be}}
		_, rec, err := crypt.GenerateIdentity(crypt.KindX25519)
		if err != nil {
			t.Fatal(err)
		}
		r0, host, err := repo.Init(context.Background(), regions, repo.InitOptions{Recovery: []string{rec}, Host: "test", Now: time.Now(), PackSize: 1 << 20,
			Chunker: chunk.Params{Algorithm: chunk.AlgorithmFastCDC, Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}})
		if err != nil {
			t.Fatal(err)
		}
		r0.Close()
		src := filepath.Join(dir, "src")
		rng := rand.New(rand.NewPCG(uint64(run), 1))
		data := make([]byte, 300<<10)
		for i := range 3 + run {
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			p := filepath.Join(src, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%02d", i))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		growing := filepath.Join(src, "d1", "growing.log")
		if err := os.WriteFile(growing, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(growing, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.Write([]byte("another line\n")); err != nil {
					t.Error(err)
					return
				}
			}
		})
		r, err := repo.Open(context.Background(), regions, repo.Keys{Host: host})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Run(context.Background(), r, Options{Paths: []string{src}, Strict: true}, nil)
		close(stop)
		wg.Wait()
		f.Close()
		r.Close()
		if !errors.Is(err, ErrStrict) || !strings.Contains(err.Error(), growing) {
			t.Fatalf("run %d: strict backup returned %v, want %v naming %s", run, err, ErrStrict, growing)
		}
	}
}
