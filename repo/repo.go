package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"golang.org/x/sync/errgroup"

	"vaultbak/backend"
	"vaultbak/chunk"
	"vaultbak/crypt"
)

// Keys are what the caller holds. Either may be nil: a repository opened
// with no keys can only be checked without reading data.
type Keys struct {
	Recovery []age.Identity        // opens everything
	Host     *crypt.HostCredential // writes snapshots, opens index and secrets
	// ExpectID, when set, pins the repository ID: a repository whose keys
	// and config were replaced as a whole has another ID.
	ExpectID string
}

// ErrNoRepository is returned by Open when no region holds a config.
var ErrNoRepository = errors.New("no repository here")

// ErrNeedRecovery is returned for an operation that needs the recovery
// identity when only a host credential (or nothing) was given.
var ErrNeedRecovery = errors.New("this needs the recovery identity; a host credential can only write")

// ErrNeedHostKey is returned by writing operations opened without a host credential.
var ErrNeedHostKey = errors.New("this needs a host credential (--host-key)")

// Repository is an open vaultbak repository over one or more regions.
type Repository struct {
	regions  []*Region
	cfg      *Config
	keys     Keys
	secrets  *Secrets
	index    *Index
	recovery []age.Recipient // seal packs, trees and bodies to these
	readers  *packCache
	damaged  []error  // found at Open, reported by Check
	lagging  []string // found at Open: regions holding an older config

	unreadableIndex int // index files the writer identity does not open

	mu      sync.Mutex
	known   []*Snapshot     // as Snapshots last returned them, for Commit's PrevIn
	knownIn map[string]bool // the regions whose listing Snapshots read
	health  regionHealth
	served  servedLog
}

// InitOptions configure a new repository.
type InitOptions struct {
	Recovery []string     // recovery recipients (age1pq1… or age1…), at least one
	Host     string       // the first host's name
	Chunker  chunk.Params // zero value: chunk.DefaultParams()
	PackSize int          // zero: DefaultPackSize
	// ObjectLock, if set, locks the history the repository stores in its
	// S3 regions; every S3 bucket must have Object Lock enabled.
	ObjectLock *ObjectLock
	Now        time.Time
}

// Init creates a repository in every region and the first host credential.
// It refuses a region that already holds a repository.
func Init(ctx context.Context, regions []*Region, opts InitOptions) (*Repository, *crypt.HostCredential, error) {
	if len(regions) == 0 {
		return nil, nil, errors.New("repo: no regions")
	}
	if len(opts.Recovery) == 0 {
		return nil, nil, errors.New("repo: init needs at least one recovery recipient")
	}
	recipients, kind, err := crypt.ParseRecipients(opts.Recovery)
	if err != nil {
		return nil, nil, fmt.Errorf("repo: %w", err)
	}
	if !validHostName(opts.Host) {
		return nil, nil, fmt.Errorf("repo: invalid host name %q", opts.Host)
	}
	if opts.Chunker == (chunk.Params{}) {
		opts.Chunker = chunk.DefaultParams()
	}
	if err := opts.Chunker.Validate(); err != nil {
		return nil, nil, fmt.Errorf("repo: %w", err)
	}
	if opts.PackSize == 0 {
		opts.PackSize = DefaultPackSize
	}
	if opts.PackSize < 1<<20 || opts.PackSize > 1<<30 { // the range decodeConfig accepts
		return nil, nil, fmt.Errorf("repo: pack size %d out of range (1 MiB to 1 GiB)", opts.PackSize)
	}
	if opts.ObjectLock != nil {
		if err := opts.ObjectLock.Validate(); err != nil {
			return nil, nil, fmt.Errorf("repo: %w", err)
		}
		for _, reg := range regions {
			if l, ok := reg.Backend.(backend.Locker); ok {
				if err := l.CheckLock(ctx); err != nil {
					return nil, nil, &RegionError{reg.Name, err}
				}
			}
		}
	}
	for _, reg := range regions {
		_, err := reg.Backend.Stat(ctx, "config")
		if err == nil {
			return nil, nil, &RegionError{reg.Name, fmt.Errorf("already holds a repository (%s)", reg.Backend.Location())}
		}
		if !errors.Is(err, backend.ErrNotFound) {
			return nil, nil, &RegionError{reg.Name, err}
		}
	}
	secrets := newSecrets(crypt.NewKey())
	cfg := &Config{
		Version:     FormatVersion,
		ID:          secrets.RepositoryID(),
		Created:     opts.Now.UTC(),
		Chunker:     opts.Chunker,
		PackSize:    opts.PackSize,
		Compression: "zstd",
		KeyKind:     kind,
		Recovery:    opts.Recovery,
		ObjectLock:  opts.ObjectLock,
	}
	host, err := crypt.NewHostCredential(opts.Host, cfg.ID, kind)
	if err != nil {
		return nil, nil, err
	}
	cfg.Hosts = []HostEntry{{Name: opts.Host, WriterRecipient: host.WriterRecipient, SigningKey: host.Signing.Public(), Enrolled: opts.Now.UTC()}}
	_, operator, err := newOperator(recipients, opts.Now)
	if err != nil {
		return nil, nil, err
	}
	cfg.Operators = []OperatorEntry{operator}

	writer, err := crypt.ParseRecipient(host.WriterRecipient)
	if err != nil {
		return nil, nil, err
	}
	sealed, keyName, err := sealSecrets(secrets, append(recipients[:len(recipients):len(recipients)], writer))
	if err != nil {
		return nil, nil, err
	}
	cfg.Keys = keyName
	cfg.Serial = 1
	cfgData, err := encodeConfig(cfg, secrets)
	if err != nil {
		return nil, nil, err
	}
	// The config is written last: it marks a complete repository.
	if err := putAll(ctx, regions, keyName, sealed); err != nil {
		return nil, nil, err
	}
	if err := putAll(ctx, regions, "config", cfgData); err != nil {
		return nil, nil, err
	}
	r := &Repository{regions: regions, cfg: cfg, keys: Keys{Host: host}, secrets: secrets, index: newIndex(), recovery: recipients}
	r.readers = newPackCache(r)
	r.applyLock()
	return r, host, nil
}

// putAll writes one object to every region concurrently.
func putAll(ctx context.Context, regions []*Region, name string, data []byte) error {
	var errs []error
	for i, err := range putEach(ctx, regions, name, data) {
		if err != nil {
			errs = append(errs, &RegionError{regions[i].Name, fmt.Errorf("write %s: %w", name, err)})
		}
	}
	return errors.Join(errs...)
}

// putEach writes one object to each region concurrently and returns each
// region's error, nil where the write succeeded.
func putEach(ctx context.Context, regions []*Region, name string, data []byte) []error {
	errs := make([]error, len(regions))
	var wg sync.WaitGroup
	for i, reg := range regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = reg.Backend.Put(ctx, name, data)
		}()
	}
	wg.Wait()
	return errs
}

// Open opens the repository held by regions with the given keys and loads
// its index (when the keys open it).
func Open(ctx context.Context, regions []*Region, keys Keys) (*Repository, error) {
	if len(regions) == 0 {
		return nil, errors.New("repo: no regions")
	}
	r := &Repository{regions: regions, keys: keys, index: newIndex()}
	r.readers = newPackCache(r)

	copies, err := r.readConfigs(ctx)
	if err != nil {
		return nil, err
	}
	sortBySerial(copies)
	if keys.Host != nil && keys.Host.Repository != "" {
		// Say plainly when a credential meets another repository, before
		// its keys fail to open this one's secrets.
		if cfg, _, err := decodeConfig(copies[0].data); err == nil {
			if cfg.ID != keys.Host.Repository {
				return nil, fmt.Errorf("repo: host credential for %q belongs to repository %s, but region %s holds repository %s: check the config or --host-key", keys.Host.Host, keys.Host.Repository, copies[0].region, cfg.ID)
			}
			if h, ok := cfg.Host(keys.Host.Host); ok && h.Revoked != nil && keys.Recovery == nil {
				return nil, fmt.Errorf("repo: host %q was revoked on %s", h.Name, h.Revoked.Format(time.RFC3339))
			}
		}
	}
	ids := r.identities()
	if len(ids) > 0 {
		if err := r.loadSecrets(ctx, ids, copies); err != nil {
			return nil, err
		}
	}
	if err := r.pickConfig(copies); err != nil {
		return nil, err
	}
	if keys.ExpectID != "" && keys.ExpectID != r.cfg.ID {
		return nil, &IntegrityError{Object: "config", Reason: fmt.Sprintf("repository ID is %s, but %s was expected: this is not the repository you pinned, or it was replaced", r.cfg.ID, keys.ExpectID)}
	}
	if keys.Host != nil {
		if keys.Host.Repository != "" && keys.Host.Repository != r.cfg.ID {
			return nil, &IntegrityError{Object: "config", Reason: fmt.Sprintf("host credential for %q belongs to repository %s, but the regions hold %s: wrong config, or the repository was replaced", keys.Host.Host, keys.Host.Repository, r.cfg.ID)}
		}
		h, ok := r.cfg.Host(keys.Host.Host)
		if !ok || h.SigningKey != keys.Host.Signing.Public() {
			return nil, fmt.Errorf("repo: host %q is not enrolled in this repository with this credential", keys.Host.Host)
		}
		if h.Revoked != nil {
			return nil, fmt.Errorf("repo: host %q was revoked on %s", h.Name, h.Revoked.Format(time.RFC3339))
		}
	}
	if r.secrets != nil {
		if err := r.loadIndex(ctx, ids); err != nil {
			return nil, err
		}
	}
	rec, _, err := crypt.ParseRecipients(r.cfg.Recovery)
	if err != nil {
		return nil, &IntegrityError{Object: "config", Reason: err.Error()}
	}
	r.recovery = rec
	r.applyLock()
	return r, nil
}

// applyLock makes every region that can hold locks lock what it stores
// of the repository's history, when the config says so.
func (r *Repository) applyLock() {
	if r.cfg.ObjectLock == nil {
		return
	}
	l := r.cfg.ObjectLock.backendLock()
	for _, reg := range r.regions {
		if lk, ok := reg.Backend.(backend.Locker); ok {
			lk.SetLock(l)
		}
	}
}

// StoredConfigs are the regions' copies of the config (region name to
// bytes), read without keys: their MAC needs the secrets. They are what
// writers that do not open the repository (replicate sync) go by.
type StoredConfigs map[string][]byte

// ReadStoredConfigs reads the config of every region that has one and
// answers, within the config's size cap; it fails only when none does.
func ReadStoredConfigs(ctx context.Context, regions []*Region) (StoredConfigs, error) {
	copies, err := (&Repository{regions: regions}).readConfigs(ctx)
	if err != nil {
		return nil, err
	}
	out := StoredConfigs{}
	for _, c := range copies {
		out[c.region] = c.data
	}
	return out, nil
}

// ApplyObjectLock gives the repository's object lock, as configs name it,
// to every region of regions that can hold locks. The lock is chosen at
// init and never changes, so every copy must name the same one: copies
// that disagree are an integrity failure (one region lifting, weakening or
// lengthening the lock of what is written into the others).
func ApplyObjectLock(regions []*Region, configs StoredConfigs) error {
	var cfg *Config
	first := ""
	for _, reg := range regions {
		got, _, err := decodeConfig(configs[reg.Name])
		if err != nil {
			continue // missing or damaged: check and Open report it
		}
		if cfg == nil {
			cfg, first = got, reg.Name
			continue
		}
		if !sameLock(cfg.ObjectLock, got.ObjectLock) {
			return &IntegrityError{Region: reg.Name, Object: "config", Reason: fmt.Sprintf("its Object Lock (%s) differs from region %s's (%s); the lock is set at init and never changes", lockString(got.ObjectLock), first, lockString(cfg.ObjectLock))}
		}
	}
	if cfg != nil && cfg.ObjectLock != nil {
		(&Repository{regions: regions, cfg: cfg}).applyLock()
	}
	return nil
}

func sameLock(a, b *ObjectLock) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func lockString(l *ObjectLock) string {
	if l == nil {
		return "none"
	}
	return fmt.Sprintf("%s, %d days", l.Mode, l.Days)
}

// Unlocked returns the regions that cannot hold the repository's object
// lock (local directories), nil when every region can or it has none.
func (r *Repository) Unlocked() []string {
	if r.cfg.ObjectLock == nil {
		return nil
	}
	var out []string
	for _, reg := range r.regions {
		if _, ok := reg.Backend.(backend.Locker); !ok {
			out = append(out, reg.Name)
		}
	}
	return out
}

// configCopy is one region's stored config.
type configCopy struct {
	region string
	data   []byte
}

// readConfigs reads the config of every region that has one.
func (r *Repository) readConfigs(ctx context.Context) ([]configCopy, error) {
	var copies []configCopy
	var errs []error
	missing := 0
	for _, reg := range r.regions {
		data, err := backend.ReadAll(ctx, reg.Backend, "config", maxConfigSize)
		r.markDown(reg, err)
		switch {
		case err == nil:
			copies = append(copies, configCopy{reg.Name, data})
		case errors.Is(err, backend.ErrNotFound):
			missing++
		case ctx.Err() != nil:
			return nil, ctx.Err()
		default:
			errs = append(errs, &RegionError{reg.Name, err})
		}
	}
	if len(copies) > 0 {
		return copies, nil
	}
	if missing == len(r.regions) {
		return nil, ErrNoRepository
	}
	return nil, fmt.Errorf("repo: read config: %w", errors.Join(errs...))
}

// pickConfig chooses the first region's config that decodes and, when the
// secrets are loaded, whose MAC verifies and whose ID belongs to the
// secrets. Regions whose copy differs are recorded as damaged; Check
// reports them, reads carry on with the good copy.
func (r *Repository) pickConfig(copies []configCopy) error {
	var reasons []string
	var chosen *configCopy
	for i, c := range copies {
		cfg, f, err := decodeConfig(c.data)
		if err == nil && r.secrets != nil {
			switch {
			case !verifyConfig(f, r.secrets):
				err = errors.New("MAC does not match: the config was altered")
			case cfg.ID != r.secrets.RepositoryID():
				err = errors.New("its ID does not belong to the repository keys: config or keys were replaced")
			}
		}
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("region %s: %v", c.region, err))
			continue
		}
		r.cfg, chosen = cfg, &copies[i]
		break
	}
	if chosen == nil {
		ie := &IntegrityError{Object: "config", Reason: "no region holds a valid config (" + strings.Join(reasons, "; ") + ")"}
		if len(copies) == 1 {
			ie.Region, ie.Reason = copies[0].region, strings.TrimPrefix(reasons[0], "region "+copies[0].region+": ")
		}
		return ie
	}
	for _, c := range copies {
		if c.region == chosen.region || bytes.Equal(c.data, chosen.data) {
			continue
		}
		if cfg, _, err := decodeConfig(c.data); err == nil && cfg.Serial < r.cfg.Serial {
			r.lagging = append(r.lagging, fmt.Sprintf("region %s holds config #%d, region %s #%d: the region lags", c.region, cfg.Serial, chosen.region, r.cfg.Serial))
			continue
		}
		r.damaged = append(r.damaged, &IntegrityError{Region: c.region, Object: "config", Reason: "differs from the config of region " + chosen.region})
	}
	return nil
}

// sortBySerial puts the configs with the highest serial first (region
// order among equals): after a change that a region missed, the newest
// config is the one to verify first.
func sortBySerial(copies []configCopy) {
	serial := func(c configCopy) uint64 {
		if cfg, _, err := decodeConfig(c.data); err == nil {
			return cfg.Serial
		}
		return 0
	}
	sort.SliceStable(copies, func(i, j int) bool { return serial(copies[i]) > serial(copies[j]) })
}

// Damaged returns what Open found damaged or divergent in some region
// while it could carry on with another region's copy.
func (r *Repository) Damaged() []error { return r.damaged }

func (r *Repository) identities() []age.Identity {
	ids := append([]age.Identity(nil), r.keys.Recovery...)
	if r.keys.Host != nil {
		ids = append(ids, r.keys.Host.Writer)
	}
	return ids
}

// listPerRegion lists prefix in every region that answers and returns the
// union (as listAll) and, per answering region, the names it holds.
func (r *Repository) listPerRegion(ctx context.Context, prefix string) (map[string]int64, map[string]map[string]bool, error) {
	union := map[string]int64{}
	per := map[string]map[string]bool{}
	var errs []error
	down := r.Down()
	for _, reg := range r.readOrder() {
		if _, isDown := down[reg.Name]; isDown && len(per) > 0 {
			continue
		}
		have := map[string]bool{}
		err := reg.Backend.List(ctx, prefix, func(fi backend.Info) error {
			have[fi.Name] = true
			if _, seen := union[fi.Name]; !seen {
				union[fi.Name] = fi.Size
			}
			return nil
		})
		if err != nil {
			r.markDown(reg, err)
			errs = append(errs, &RegionError{reg.Name, fmt.Errorf("list %s: %w", prefix, err)})
			continue
		}
		per[reg.Name] = have
	}
	if len(per) == 0 {
		return nil, nil, errors.Join(errs...)
	}
	return union, per, nil
}

// listAll returns the union of the object names under prefix in every
// region that answers, with their sizes as the first region listing them
// reports. Regions already known to be down are skipped while another
// region answers.
func (r *Repository) listAll(ctx context.Context, prefix string) (map[string]int64, error) {
	out := map[string]int64{}
	var errs []error
	ok := 0
	down := r.Down()
	for _, reg := range r.readOrder() {
		if _, isDown := down[reg.Name]; isDown && ok > 0 {
			continue
		}
		err := reg.Backend.List(ctx, prefix, func(fi backend.Info) error {
			if _, seen := out[fi.Name]; !seen {
				out[fi.Name] = fi.Size
			}
			return nil
		})
		if err != nil {
			r.markDown(reg, err)
			errs = append(errs, &RegionError{reg.Name, fmt.Errorf("list %s: %w", prefix, err)})
			continue
		}
		ok++
	}
	if ok == 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// loadSecrets opens the keys file the configs name (the first region's
// first), falling back to any keys file when none opens.
func (r *Repository) loadSecrets(ctx context.Context, ids []age.Identity, copies []configCopy) error {
	var names []string
	seen := map[string]bool{}
	for _, c := range copies {
		if cfg, _, err := decodeConfig(c.data); err == nil && cfg.Keys != "" && !seen[cfg.Keys] {
			names = append(names, cfg.Keys)
			seen[cfg.Keys] = true
		}
	}
	listed, err := r.listAll(ctx, "keys/")
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	for _, name := range sortedKeys(listed) {
		if !seen[name] {
			names = append(names, name)
		}
	}
	var errs []error
	for _, name := range names {
		if !strings.HasPrefix(name, "keys/") {
			continue
		}
		data, _, err := r.readObject(ctx, name, maxKeysFile, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s, err := openSecrets(data, ids)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.secrets = s
		return nil
	}
	for _, e := range errs {
		if errors.Is(e, crypt.ErrNoIdentity) {
			return fmt.Errorf("repo: none of the given keys opens this repository: %w", crypt.ErrNoIdentity)
		}
	}
	return fmt.Errorf("repo: read keys: %w", errors.Join(errs...))
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// loadIndex reads every index file of every region into memory. An index
// file is written after the packs it lists, to the same regions, and
// replicate copies them in that order too: so the regions holding an index
// file hold its packs, and the index records them per pack.
func (r *Repository) loadIndex(ctx context.Context, ids []age.Identity) error {
	names, perRegion, err := r.listPerRegion(ctx, "index/")
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	var mu sync.Mutex
	for _, name := range sortedKeys(names) {
		g.Go(func() error {
			packs, err := r.readIndexFile(ctx, name, ids)
			if err != nil {
				// A host enrolled after an index file was written (by a
				// backup that ran during the enrolment) may not open it:
				// it only deduplicates less. The recovery identity opens
				// every index file.
				if errors.Is(err, crypt.ErrNoIdentity) && !r.CanRead() {
					mu.Lock()
					r.unreadableIndex++
					mu.Unlock()
					return nil
				}
				return err
			}
			var mask uint64
			for i, reg := range r.regions {
				if perRegion[reg.Name][name] && i < 64 {
					mask |= 1 << i
				}
			}
			for _, p := range packs {
				r.index.addIn(p.Hash, p.Size, mask, p.Entries)
			}
			return nil
		})
	}
	return g.Wait()
}

func (r *Repository) readIndexFile(ctx context.Context, name string, ids []age.Identity) ([]indexPack, error) {
	var packs []indexPack
	_, _, err := r.readObject(ctx, name, maxIndexSize, func(region string, data []byte) error {
		want, _ := hashFromName(name)
		if objectHash(data) != want {
			return &IntegrityError{Region: region, Object: name, Reason: "content does not match its hash"}
		}
		plain, err := crypt.Open(data, maxIndexSize, ids)
		if err != nil {
			if errors.Is(err, crypt.ErrNoIdentity) {
				return err
			}
			return &IntegrityError{Region: region, Object: name, Reason: err.Error()}
		}
		p, err := decodeIndex(plain)
		if err != nil {
			return &IntegrityError{Region: region, Object: name, Reason: err.Error()}
		}
		packs = p
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	return packs, nil
}

// Config returns the repository config.
func (r *Repository) Config() *Config { return r.cfg }

// Regions returns the repository's regions in read-preference order.
func (r *Repository) Regions() []*Region { return r.regions }

// Secrets returns the repository secrets, or nil when opened without keys.
func (r *Repository) Secrets() *Secrets { return r.secrets }

// Index returns the loaded index (empty when opened without keys).
func (r *Repository) Index() *Index { return r.index }

// CanRead reports whether the repository was opened with a recovery identity.
func (r *Repository) CanRead() bool { return len(r.keys.Recovery) > 0 }

// Host returns the host credential the repository was opened with, or nil.
func (r *Repository) Host() *crypt.HostCredential { return r.keys.Host }

// Close releases open pack readers.
func (r *Repository) Close() error {
	r.readers.close()
	return nil
}

// ShortID returns the abbreviated form of a snapshot ID used in listings.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// validHostName reports whether a host name is acceptable.
func validHostName(s string) bool {
	return s != "" && len(s) <= 255 && !strings.ContainsAny(s, "\x00\n\r/")
}
