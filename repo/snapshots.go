package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// Snapshots reads and verifies every manifest in the repository (the union
// over all regions), oldest first. A manifest that fails verification in
// every region that has it is an integrity error naming it.
func (r *Repository) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	names, perRegion, err := r.listPerRegion(ctx, "snapshots/")
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	var out []*Snapshot
	var hidden []error
	for _, name := range sortedKeys(names) {
		id := strings.TrimPrefix(name, "snapshots/")
		s, err := r.readSnapshot(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, reg := range r.regions {
			if perRegion[reg.Name][name] {
				s.In = append(s.In, reg.Name)
			}
		}
		// Regions are independent witnesses: one that the manifest says
		// holds it, and that answered, must list it.
		for _, reg := range s.Regions {
			if have, answered := perRegion[reg]; answered && !have[name] {
				hidden = append(hidden, &IntegrityError{Region: reg, Object: "snapshot " + id, Reason: "missing, though it was committed there (its manifest names the region): deleted or hidden"})
			}
		}
		out = append(out, s)
	}
	if len(hidden) > 0 {
		return nil, errors.Join(hidden...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	answered := map[string]bool{}
	for reg := range perRegion {
		answered[reg] = true
	}
	if err := verifyChains(out, answered); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.known, r.knownIn = out, answered
	r.mu.Unlock()
	return out, nil
}

// Listed returns the regions whose listings the last Snapshots read (nil
// before it ran).
func (r *Repository) Listed() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.knownIn)
}

// prevIn returns, for every region whose listing answered when the
// snapshots were last read, the position of host's newest manifest it
// held, up to head (see Manifest.PrevIn); nil when they were not read.
func (r *Repository) prevIn(host string, head uint64) map[string]uint64 {
	r.mu.Lock()
	known, answered := r.known, r.knownIn
	r.mu.Unlock()
	if answered == nil {
		return nil
	}
	out := map[string]uint64{}
	for reg := range answered {
		out[reg] = 0
	}
	for _, s := range known {
		if s.Host != host || s.Seq > head {
			continue
		}
		for _, reg := range s.In {
			if seq, ok := out[reg]; ok && s.Seq > seq {
				out[reg] = s.Seq
			}
		}
	}
	return out
}

// VerifyChains checks each host's hash chain: sequence numbers 1…n with no
// gap or repeat, and each manifest naming its predecessor. A deleted
// manifest, a fork or a replayed one is an integrity failure.
func VerifyChains(snaps []*Snapshot) error { return verifyChains(snaps, nil) }

// verifyChains is VerifyChains where answered names the regions whose
// listings were read: a hole in a chain is no failure when the manifest
// after it says that none of those regions held the missing ones (see
// Manifest.PrevIn).
func verifyChains(snaps []*Snapshot, answered map[string]bool) error {
	byHost := map[string][]*Snapshot{}
	for _, s := range snaps {
		byHost[s.Host] = append(byHost[s.Host], s)
	}
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	var errs []error
	for _, h := range hosts {
		links := make([]chainLink, len(byHost[h]))
		for i, s := range byHost[h] {
			links[i] = chainLink{id: s.ID, prev: s.Prev, seq: s.Seq, holeOK: holeBefore(s.PrevIn, answered)}
		}
		if at, reason := chainBreak(links, "snapshot"); reason != "" {
			errs = append(errs, &IntegrityError{Object: "snapshot " + at, Reason: fmt.Sprintf("host %s: %s", h, reason)})
		}
	}
	return errors.Join(errs...)
}

func (r *Repository) readSnapshot(ctx context.Context, id string) (*Snapshot, error) {
	var snap *Snapshot
	_, region, err := r.readObject(ctx, snapshotName(id), maxManifestSize, func(region string, data []byte) error {
		s, err := decodeManifest(id, data)
		if err == nil {
			err = r.verifySigner(s)
		}
		if err != nil {
			return &IntegrityError{Region: region, Object: "snapshot " + id, Reason: err.Error()}
		}
		snap = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	snap.Region = region
	return snap, nil
}

// verifySigner checks that the manifest belongs to this repository and was
// signed by the key enrolled for its host, before any revocation.
func (r *Repository) verifySigner(s *Snapshot) error {
	if s.Repository != r.cfg.ID {
		return fmt.Errorf("belongs to repository %s, not this one (%s)", s.Repository, r.cfg.ID)
	}
	h, ok := r.cfg.Host(s.Host)
	if !ok {
		return fmt.Errorf("signed as host %q, which is not enrolled", s.Host)
	}
	if h.SigningKey != s.Signer {
		return fmt.Errorf("signed by a key that is not the one enrolled for host %q", s.Host)
	}
	if h.Revoked != nil && (s.Seq > h.RevokedAfter || !s.Time.Before(*h.Revoked)) {
		return fmt.Errorf("signed by host %q after its revocation on %s", s.Host, h.Revoked.Format(time.RFC3339))
	}
	return nil
}

// Filter selects snapshots.
type Filter struct {
	Host string
	Tags []string // every tag must be present
	Set  string
	At   time.Time // zero: no time limit; else the newest at or before At
}

// Match reports whether s passes f (ignoring At).
func (f Filter) Match(s *Snapshot) bool {
	if f.Host != "" && s.Host != f.Host {
		return false
	}
	if f.Set != "" && s.Set != f.Set {
		return false
	}
	for _, t := range f.Tags {
		if !slices.Contains(s.Tags, t) {
			return false
		}
	}
	return true
}

// ErrSnapshotNotFound is returned by FindSnapshot when nothing matches.
var ErrSnapshotNotFound = errors.New("no such snapshot")

// ErrSnapshotRef is wrapped by every error of FindSnapshot and Pick about
// the reference itself (not found, ambiguous, too short).
var ErrSnapshotRef = errors.New("bad snapshot reference")

type refError struct{ err error }

func (e *refError) Error() string   { return e.err.Error() }
func (e *refError) Unwrap() []error { return []error{e.err, ErrSnapshotRef} }

// FindSnapshot resolves "latest" or a unique ID prefix to a snapshot,
// honouring f (and f.At for "latest").
func (r *Repository) FindSnapshot(ctx context.Context, ref string, f Filter) (*Snapshot, error) {
	all, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	return Pick(all, ref, f)
}

// Pick resolves ref among snaps (oldest first); see FindSnapshot.
func Pick(snaps []*Snapshot, ref string, f Filter) (*Snapshot, error) {
	if ref == "latest" {
		var best *Snapshot
		for _, s := range snaps {
			if !f.Match(s) || (!f.At.IsZero() && s.Time.After(f.At)) {
				continue
			}
			if best == nil || !s.Time.Before(best.Time) {
				best = s
			}
		}
		if best == nil {
			if !f.At.IsZero() {
				return nil, &refError{fmt.Errorf("%w at or before %s", ErrSnapshotNotFound, f.At.Format(time.RFC3339))}
			}
			return nil, &refError{ErrSnapshotNotFound}
		}
		return best, nil
	}
	if !f.At.IsZero() {
		return nil, &refError{fmt.Errorf("--at picks the newest snapshot at or before a time, so it goes with 'latest', not with snapshot %q", ref)}
	}
	if len(ref) < 4 {
		return nil, &refError{fmt.Errorf("snapshot ID prefix %q is too short (give at least 4 hex digits)", ref)}
	}
	prefix := strings.ToLower(ref) // IDs are lower-case hex; a prefix copied in capitals is the same
	var found []*Snapshot
	for _, s := range snaps {
		if strings.HasPrefix(s.ID, prefix) && f.Match(s) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return nil, &refError{fmt.Errorf("%w %q", ErrSnapshotNotFound, ref)}
	case 1:
		return found[0], nil
	}
	return nil, &refError{fmt.Errorf("snapshot ID prefix %q is ambiguous (%d snapshots match)", ref, len(found))}
}

// Body loads a snapshot's body; it needs the recovery identity.
func (r *Repository) Body(ctx context.Context, s *Snapshot) (*ManifestBody, error) {
	if !r.CanRead() {
		return nil, ErrNeedRecovery
	}
	if loc, ok := r.index.Lookup(s.Body); ok && (loc.Type != MetaBlob || loc.RawLen > maxManifestSize) {
		return nil, &IntegrityError{Object: "snapshot " + s.ID, Reason: fmt.Sprintf("body is indexed as a %d-byte %s blob", loc.RawLen, loc.Type)}
	}
	plain, err := r.LoadBlob(ctx, s.Body, nil)
	if err != nil {
		return nil, fmt.Errorf("repo: snapshot %s body: %w", ShortID(s.ID), err)
	}
	var b ManifestBody
	if err := json.Unmarshal(plain, &b); err != nil {
		return nil, &IntegrityError{Object: "snapshot " + s.ID, Reason: "malformed body"}
	}
	return &b, nil
}

// holeBefore says whether the elements from a to b before a chain element
// may be missing from every region in answered: when no answered region
// held any of them when the element was written (prevIn: Manifest.PrevIn).
// Without prevIn nothing is known: no hole is.
func holeBefore(prevIn map[string]uint64, answered map[string]bool) func(a, b uint64) bool {
	if prevIn == nil || answered == nil {
		return nil
	}
	return func(a, b uint64) bool {
		for reg, held := range prevIn {
			if answered[reg] && held >= a && held <= b {
				return false
			}
		}
		return true
	}
}

// LoadContentStats fills in the content totals (Stats.Files, Dirs,
// Bytes) of snaps from their sealed bodies. Without the recovery identity
// it does nothing: those totals are not public.
func (r *Repository) LoadContentStats(ctx context.Context, snaps ...*Snapshot) error {
	if !r.CanRead() {
		return nil
	}
	for _, s := range snaps {
		if s.StatsKnown {
			continue
		}
		b, err := r.Body(ctx, s)
		if err != nil {
			return err
		}
		if b.Stats != nil {
			s.Stats.Files, s.Stats.Dirs, s.Stats.Bytes = b.Stats.Files, b.Stats.Dirs, b.Stats.Bytes
		}
		s.StatsKnown = true
	}
	return nil
}

// ChainHead returns the sequence number and ID of host's newest manifest in
// the repository (0, "" when it has none).
func ChainHead(snaps []*Snapshot, host string) (uint64, string) {
	var seq uint64
	var id string
	for _, s := range snaps {
		if s.Host == host && s.Seq > seq {
			seq, id = s.Seq, s.ID
		}
	}
	return seq, id
}
