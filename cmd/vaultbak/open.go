package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"filippo.io/age"

	"vaultbak/crypt"
	"vaultbak/repo"
)

// keyNeeds says which keys a command needs.
type keyNeeds int

const (
	needNone     keyNeeds = iota // use what is given, nothing required
	needHost                     // a host credential is required
	needRecovery                 // the recovery identity is required
)

func (g *globals) identityFile() string {
	if g.identityPath != "" {
		return g.identityPath
	}
	return os.Getenv("VAULTBAK_IDENTITY")
}

// hostKeyFile returns the host credential path: flag, env, config, or
// host.key beside the config file.
func (g *globals) hostKeyFile(c *fileConfig) string {
	switch {
	case g.hostKeyPath != "":
		return g.hostKeyPath
	case os.Getenv("VAULTBAK_HOST_KEY") != "":
		return os.Getenv("VAULTBAK_HOST_KEY")
	case c != nil && c.HostKey != "":
		return c.resolve(c.HostKey)
	case c != nil:
		return c.resolve("host.key")
	}
	return "host.key"
}

func loadIdentity(path string) ([]age.Identity, error) {
	data, err := crypt.ReadKeyFile(path)
	if err != nil {
		return nil, withHint(usagef("recovery identity: %v", err), "pass the file written by 'vaultbak keygen' with --identity or VAULTBAK_IDENTITY")
	}
	ids, err := crypt.ParseIdentities(data)
	if err != nil {
		return nil, usagef("recovery identity %s: %v", path, err)
	}
	return ids, nil
}

func loadHostKey(path string) (*crypt.HostCredential, error) {
	data, err := crypt.ReadKeyFile(path)
	if err != nil {
		return nil, withHint(usagef("host credential: %v", err), "pass the file 'vaultbak init' wrote with --host-key, VAULTBAK_HOST_KEY or host_key in the config")
	}
	c, err := crypt.ParseHostCredential(data)
	if err != nil {
		return nil, usagef("host credential %s: %v", path, err)
	}
	return c, nil
}

// session is an open repository and what the command needs around it.
type session struct {
	cfg  *fileConfig
	repo *repo.Repository
	out  *output
}

// Close is a no-op: the repository stays open until the command's audit
// record is written, and run closes it then.
func (s *session) Close() {}

// open loads the config and the keys the command needs and opens the
// repository.
func (g *globals) open(ctx context.Context, need keyNeeds) (*session, error) {
	cfg, err := loadConfig(g)
	if err != nil {
		return nil, err
	}
	return g.openConfig(ctx, cfg, need)
}

// openConfig is open with a config already loaded (a backup set's or one
// region's view of it).
func (g *globals) openConfig(ctx context.Context, cfg *fileConfig, need keyNeeds) (*session, error) {
	var err error
	var keys repo.Keys
	if p := g.identityFile(); p != "" {
		if keys.Recovery, err = loadIdentity(p); err != nil {
			return nil, err
		}
	} else if need == needRecovery {
		return nil, withHint(usagef("this command needs the recovery identity"), "pass it with --identity FILE or VAULTBAK_IDENTITY; a host credential can only write")
	}
	hk := g.hostKeyFile(cfg)
	switch {
	case need == needHost:
		if keys.Host, err = loadHostKey(hk); err != nil {
			return nil, err
		}
	case keys.Recovery == nil:
		// Use the host credential when it is there, for what it can do.
		if _, err := os.Stat(hk); err == nil {
			if keys.Host, err = loadHostKey(hk); err != nil {
				return nil, err
			}
		}
	}
	regions, err := cfg.openRegions(ctx, createNothing)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, regions, keys)
	if err != nil {
		return nil, err
	}
	budget := int64(readBudget)
	if need == needHost {
		budget = backupBudget + r.PackBufferBytes()
	}
	fitMemoryLimit(budget)
	s := &session{cfg: cfg, repo: r, out: g.out}
	g.sessions = append(g.sessions, s)
	g.auditSession = s
	return s, nil
}

// stateDir is where this host keeps its state for the repository: the
// chain high-water mark and the file metadata cache.
func stateDir(c *fileConfig, repoID, host string) (string, error) {
	base, err := stateBase(c)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(base, repoID, host)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// stateBase is the directory holding this machine's state of every
// repository: VAULTBAK_CACHE_DIR, cache_dir, or the user cache directory.
func stateBase(c *fileConfig) (string, error) {
	base := os.Getenv("VAULTBAK_CACHE_DIR")
	if base == "" && c.CacheDir != "" {
		base = c.resolve(c.CacheDir)
	}
	if base == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("no cache directory: %w (set cache_dir in the config)", err)
		}
		base = filepath.Join(d, "vaultbak")
	}
	return base, nil
}

// snapshots reads and verifies the repository's snapshots, and compares
// each host's chain with the high-water mark this machine recorded when it
// committed for that host: all regions rolled back at once is an integrity
// failure no region can reveal by itself.
func (s *session) snapshots(ctx context.Context) ([]*repo.Snapshot, error) {
	snaps, err := s.repo.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	base, err := stateBase(s.cfg)
	if err != nil {
		return snaps, nil // no local state: nothing to compare with
	}
	dir := filepath.Join(base, s.repo.Config().ID)
	hosts, err := os.ReadDir(dir)
	if err != nil {
		return snaps, nil
	}
	for _, h := range hosts {
		hw, err := readHighWater(filepath.Join(dir, h.Name()))
		if err != nil || hw.Seq == 0 {
			continue
		}
		_, _, away, err := chainHead(snaps, h.Name(), hw, s.repo.Listed())
		if err != nil {
			return nil, err
		}
		if away != nil {
			s.out.warn("host "+h.Name(), awayWarning(hw, away, "the snapshots listed stop before it"))
		}
	}
	return snaps, nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
