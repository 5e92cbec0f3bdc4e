package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"

	"vaultbak/backup"
	"vaultbak/repo"
)

// highWater is the newest manifest this host committed, and how much of
// the host's chain each region held then: a repository whose chain for
// this host is older was rolled back, unless the regions that hold the
// newest manifest merely did not answer.
type highWater struct {
	Seq uint64 `json:"seq"`
	ID  string `json:"id"`
	// Held is, for each region the host saw when it committed, the
	// position of the host's newest manifest there: Seq in the regions
	// the manifest was committed to, the manifest's PrevIn elsewhere.
	// Marks written by vaultbak before it was kept have none.
	Held map[string]uint64 `json:"held,omitempty"`
}

// markOf is the high-water mark of a snapshot this host just committed.
func markOf(snap *repo.Snapshot) highWater {
	return highWater{Seq: snap.Seq, ID: snap.ID, Held: repo.Held(snap.PrevIn, snap.Regions, snap.Seq)}
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
// host remembers committing. listed names the regions whose listings were
// read. With the mark's Held, each region that answered must still list as
// much of the chain as it held; when only the regions holding the newest
// manifest did not answer, the repository as read lags rather than went
// back: the chain continues from the mark, and away names those regions.
func chainHead(snaps []*repo.Snapshot, host string, hw highWater, listed map[string]bool) (seq uint64, id string, away []string, err error) {
	seq, id = repo.ChainHead(snaps, host)
	if hw.Held != nil {
		now := map[string]uint64{} // each region's newest manifest of host
		for _, s := range snaps {
			if s.Host == host {
				for _, reg := range s.In {
					now[reg] = max(now[reg], s.Seq)
				}
			}
		}
		if reg, held := lostHeld(hw.Held, now, listed); reg != "" {
			return 0, "", nil, &repo.IntegrityError{Region: reg, Object: "host " + host, Reason: fmt.Sprintf("the region's newest snapshot of this host is #%d, but it held #%d when this host committed #%d (%s): snapshots were removed or the region was rolled back", now[reg], held, hw.Seq, repo.ShortID(hw.ID))}
		}
		if seq < hw.Seq {
			return hw.Seq, hw.ID, holding(hw.Held, hw.Seq), nil
		}
	}
	if seq < hw.Seq {
		return 0, "", nil, &repo.IntegrityError{Object: "host " + host, Reason: fmt.Sprintf("the repository's newest snapshot of this host is #%d, but this host committed #%d (%s): snapshots were removed or the repository was rolled back", seq, hw.Seq, repo.ShortID(hw.ID))}
	}
	if seq == hw.Seq && hw.ID != "" && id != hw.ID {
		return 0, "", nil, &repo.IntegrityError{Object: "host " + host, Reason: fmt.Sprintf("snapshot #%d of this host is %s in the repository, but this host committed %s", seq, repo.ShortID(id), repo.ShortID(hw.ID))}
	}
	return seq, id, nil, nil
}

// lostHeld returns a region that answered (listed) but whose newest
// position of a chain (now) is below what a high-water mark says it held,
// and that position; "" when there is none.
func lostHeld(held, now map[string]uint64, listed map[string]bool) (string, uint64) {
	for _, reg := range slices.Sorted(maps.Keys(held)) {
		if listed[reg] && now[reg] < held[reg] {
			return reg, held[reg]
		}
	}
	return "", 0
}

// holding returns the regions that a high-water mark says hold position
// seq, sorted.
func holding(held map[string]uint64, seq uint64) []string {
	var out []string
	for _, reg := range slices.Sorted(maps.Keys(held)) {
		if held[reg] == seq {
			out = append(out, reg)
		}
	}
	return out
}

// answering returns the regions of r not known to be down.
func answering(r *repo.Repository) map[string]bool {
	down := r.Down()
	out := map[string]bool{}
	for _, reg := range r.Regions() {
		if _, isDown := down[reg.Name]; !isDown {
			out[reg.Name] = true
		}
	}
	return out
}

// awayWarning says that this host's newest snapshot is only in regions
// that did not answer, and what the command does about it.
func awayWarning(hw highWater, away []string, then string) error {
	return fmt.Errorf("its newest snapshot #%d (%s) is in region(s) %s, which did not answer; %s", hw.Seq, repo.ShortID(hw.ID), strings.Join(away, ", "), then)
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
