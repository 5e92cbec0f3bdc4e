package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"vaultbak/backend"
)

// Region is one full replica of the repository: a named backend.
type Region struct {
	Name    string
	Backend backend.Backend
}

func (r *Region) String() string { return r.Name }

// RegionError is an error that happened in one region.
type RegionError struct {
	Region string
	Err    error
}

func (e *RegionError) Error() string { return fmt.Sprintf("region %s: %v", e.Region, e.Err) }
func (e *RegionError) Unwrap() error { return e.Err }

// ErrIntegrity marks damage, forgery or inconsistency found in the
// repository: a hash, MAC or signature that does not match, or a malformed
// object. The CLI maps it to exit code 4.
var ErrIntegrity = errors.New("integrity failure")

// IntegrityError reports damage to one object in one region.
type IntegrityError struct {
	Region string // "" when not tied to one region
	Object string // object name, blob ID or snapshot ID
	Reason string
}

func (e *IntegrityError) Error() string {
	if e.Region == "" {
		return fmt.Sprintf("integrity: %s: %s", e.Object, e.Reason)
	}
	return fmt.Sprintf("integrity: region %s: %s: %s", e.Region, e.Object, e.Reason)
}

func (e *IntegrityError) Is(target error) bool { return target == ErrIntegrity }

// regionHealth remembers, for one open repository, the regions that failed
// to answer (not a missing or damaged object: the region itself), so that
// later reads try them last instead of waiting out their retries again.
type regionHealth struct {
	mu   sync.Mutex
	down map[string]error
}

// markDown records that reg failed with err, unless err says only that one
// object is missing or damaged.
func (r *Repository) markDown(reg *Region, err error) {
	var ie *IntegrityError
	if err == nil || errors.Is(err, backend.ErrNotFound) || errors.As(err, &ie) || errors.Is(err, context.Canceled) || errors.Is(err, ErrNeedRecovery) {
		return
	}
	r.health.mu.Lock()
	defer r.health.mu.Unlock()
	if r.health.down == nil {
		r.health.down = map[string]error{}
	}
	r.health.down[reg.Name] = err
}

// readOrder returns the regions in preference order, the ones that failed
// to answer last.
func (r *Repository) readOrder() []*Region {
	r.health.mu.Lock()
	defer r.health.mu.Unlock()
	if len(r.health.down) == 0 {
		return r.regions
	}
	out := make([]*Region, 0, len(r.regions))
	var later []*Region
	for _, reg := range r.regions {
		if _, down := r.health.down[reg.Name]; down {
			later = append(later, reg)
		} else {
			out = append(out, reg)
		}
	}
	return append(out, later...)
}

// Down returns the regions that failed to answer during this session.
func (r *Repository) Down() map[string]error {
	r.health.mu.Lock()
	defer r.health.mu.Unlock()
	out := make(map[string]error, len(r.health.down))
	for k, v := range r.health.down {
		out[k] = v
	}
	return out
}

// readObject reads a whole object of at most limit bytes from the first
// region that has it and for which check accepts it; errors of the regions
// tried are joined when none does.
func (r *Repository) readObject(ctx context.Context, name string, limit int64, check func(region string, data []byte) error) ([]byte, string, error) {
	var errs []error
	for _, reg := range r.readOrder() {
		data, err := backend.ReadAll(ctx, reg.Backend, name, limit)
		r.markDown(reg, err)
		if err == nil && check != nil {
			err = check(reg.Name, data)
		}
		if err == nil {
			return data, reg.Name, nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		errs = append(errs, &RegionError{reg.Name, err})
	}
	return nil, "", errors.Join(errs...)
}
