package backup

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
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
// when /proc/self/status, which states a size of 0 and always reads
// longer, has been read maxAttempts times after them.
func TestStrictFailureNamesFile(t *testing.T) {
	const changing = "/proc/self/status"
	if fi, err := os.Lstat(changing); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Skipf("%s: no regular file stating size 0 here (%v, %v)", changing, fi, err)
	}
	for run := range 8 {
		dir := walkedBefore(t, changing)
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
		r, err := repo.Open(context.Background(), regions, repo.Keys{Host: host})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Run(context.Background(), r, Options{Paths: []string{src, changing}, Strict: true}, nil)
		r.Close()
		if !errors.Is(err, ErrStrict) || !strings.Contains(err.Error(), changing) {
			t.Fatalf("run %d: strict backup returned %v, want %v naming %s", run, err, ErrStrict, changing)
		}
	}
}

// walkedBefore returns a new directory that a backup walks before path (the
// walk goes in name order): in /dev/shm where there is one, so that the
// failure on path comes last, with the directory's saves in flight.
func walkedBefore(t *testing.T, path string) string {
	t.Helper()
	const shm = "/dev/shm"
	if fi, err := os.Stat(shm); err != nil || !fi.IsDir() || shm > path {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp(shm, "vaultbak-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
