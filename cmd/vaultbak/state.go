package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"

	"vaultbak/backup"
	"vaultbak/repo"
)

// highWater is the newest manifest this host committed: a repository
// whose chain for this host is older was rolled back.
type highWater struct {
	Seq uint64 `json:"seq"`
	ID  string `json:"id"`
}

// readStateFile reads the JSON state file at path into v. It reports
// whether the file exists; a missing one is no error and leaves v as it is.
func readStateFile(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if isNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

func readHighWater(dir string) (highWater, error) {
	var hw highWater
	_, err := readStateFile(filepath.Join(dir, "high-water.json"), &hw)
	return hw, err
}

func writeHighWater(dir string, hw highWater) error {
	data, _ := json.Marshal(hw)
	return renameio.WriteFile(filepath.Join(dir, "high-water.json"), data, 0o600)
}

// chainHead returns where this host's chain continues, refusing a
// repository whose newest manifest of this host is older than the one this
// host remembers committing.
func chainHead(snaps []*repo.Snapshot, host string, hw highWater) (uint64, string, error) {
	seq, id := repo.ChainHead(snaps, host)
	if seq < hw.Seq {
		return 0, "", &repo.IntegrityError{Object: "host " + host, Reason: fmt.Sprintf("the repository's newest snapshot of this host is #%d, but this host committed #%d (%s): snapshots were removed or the repository was rolled back", seq, hw.Seq, repo.ShortID(hw.ID))}
	}
	if seq == hw.Seq && hw.ID != "" && id != hw.ID {
		return 0, "", &repo.IntegrityError{Object: "host " + host, Reason: fmt.Sprintf("snapshot #%d of this host is %s in the repository, but this host committed %s", seq, repo.ShortID(id), repo.ShortID(hw.ID))}
	}
	return seq, id, nil
}

// cacheFile names the file metadata cache of one set of backup paths.
func cacheFile(dir string, paths []string, set string) string {
	sorted := append([]string(nil), paths...)
	sort.Strings(sorted)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", set)
	for _, p := range sorted {
		fmt.Fprintf(h, "%s\x00", p)
	}
	return filepath.Join(dir, "files-"+hex.EncodeToString(h.Sum(nil))[:16]+".cache")
}

func readFileCache(path string) *backup.Cache {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	c, err := backup.DecodeCache(data)
	if err != nil {
		return nil // a damaged cache only costs a full read
	}
	return c
}

func writeFileCache(path string, c *backup.Cache) error {
	return renameio.WriteFile(path, c.Marshal(), 0o600)
}

// lockHost takes this host's backup lock, so that two overlapping runs
// (a slow nightly job and the next one) cannot fork the host's chain.
func lockHost(dir, host string) (unlock func(), err error) {
	path := filepath.Join(dir, "backup.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, withHint(fmt.Errorf("another backup of host %q is running (lock %s)", host, path), "wait for it to finish; the lock is released when that process exits")
	}
	return func() { f.Close() }, nil
}
