package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// ErrBelowQuorum is returned (wrapped) when fewer regions than the quorum
// could take a backup's writes: nothing is committed.
var ErrBelowQuorum = errors.New("fewer regions than the quorum hold the backup")

// regionSet tracks, for one writer, which regions still take its writes.
// A region whose write fails (after the backend's own retries) is dropped
// for the rest of the run; the writer fails once fewer than quorum remain.
// Dropped regions are what the commit reports as lagging.
type regionSet struct {
	quorum int
	mu     sync.Mutex
	alive  []*Region
	failed map[string]error
	all    []*Region // as given: bit i of mask is all[i]
	mask   uint64
}

// newRegionSet starts with all of regions, the repository's regions in
// their order, so that mask uses the bits of the index's region masks.
func newRegionSet(regions []*Region, quorum int) *regionSet {
	s := &regionSet{quorum: quorum, alive: append([]*Region(nil), regions...), failed: map[string]error{}, all: regions}
	for i := range min(len(regions), 64) {
		s.mask |= 1 << i
	}
	return s
}

// liveMask returns the bit mask of the live regions (a region past the
// 64th has no bit).
func (s *regionSet) liveMask() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mask
}

// DefaultQuorum is all regions but one, and at least one.
func DefaultQuorum(n int) int { return max(1, n-1) }

func (s *regionSet) live() []*Region {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Region(nil), s.alive...)
}

// drop removes a region after err.
func (s *regionSet) drop(reg *Region, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.alive {
		if r == reg {
			s.alive = append(s.alive[:i], s.alive[i+1:]...)
			s.failed[reg.Name] = err
			break
		}
	}
	for i, r := range s.all {
		if r == reg && i < 64 {
			s.mask &^= 1 << i
		}
	}
}

// check returns ErrBelowQuorum, naming why the regions dropped, when fewer
// than quorum regions remain.
func (s *regionSet) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.alive) >= s.quorum {
		return nil
	}
	return fmt.Errorf("%w: %d of %d needed (%s)", ErrBelowQuorum, len(s.alive), s.quorum, s.describeLocked())
}

func (s *regionSet) describeLocked() string {
	names := make([]string, 0, len(s.failed))
	for n := range s.failed {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("region %s: %v", n, s.failed[n])
	}
	return strings.Join(parts, "; ")
}

// lagging returns the dropped regions and why.
func (s *regionSet) lagging() map[string]error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]error, len(s.failed))
	for k, v := range s.failed {
		out[k] = v
	}
	return out
}

// put writes one object to every live region concurrently, drops the
// regions that fail, and fails when fewer than quorum remain. ctx errors
// are returned as they are and drop nothing.
func (s *regionSet) put(ctx context.Context, name string, data []byte) error {
	regions := s.live()
	errs := putEach(ctx, regions, name, data)
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, err := range errs {
		if err != nil {
			s.drop(regions[i], fmt.Errorf("write %s: %w", name, err))
		}
	}
	return s.check()
}
