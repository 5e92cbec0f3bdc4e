package repo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"

	"vaultbak/backend"
	"vaultbak/crypt"
)

// stagedPack streams a pack's sealed bytes, as age writes them, to every
// live region whose backend can stage an object (local directories), and
// hashes them on the way: the pack is never held in memory, and its name
// is known once the seal closes. A region whose staging fails is left out
// of this pack (and dropped when the pack commits); the others go on.
type stagedPack struct {
	regions []*Region
	objs    []backend.Staged
	errs    []error
	hash    hash.Hash
	n       int64
}

// canStage reports whether every one of regions can stage objects.
func canStage(regions []*Region) bool {
	for _, reg := range regions {
		if st, ok := reg.Backend.(backend.Stager); !ok || !st.CanStage() {
			return false
		}
	}
	return true
}

// StagesPacks reports whether a writer would stream its packs to the
// regions as they fill (every region can stage objects) rather than hold
// them in pack buffers.
func (r *Repository) StagesPacks() bool { return canStage(r.regions) }

// PackBufferBytes returns the memory a writer's pack buffers take: none
// when it stages its packs.
func (r *Repository) PackBufferBytes() int64 {
	if r.StagesPacks() {
		return 0
	}
	return int64(writerUploaders+1) * int64(packBufSize(r.cfg.PackSize))
}

// stagePack starts a staged pack in every live region of s; it fails only
// when fewer than the quorum could start one.
func (s *regionSet) stagePack(ctx context.Context) (*stagedPack, error) {
	regions := s.live()
	sp := &stagedPack{regions: regions, objs: make([]backend.Staged, len(regions)), errs: make([]error, len(regions)), hash: sha256.New()}
	for i, reg := range regions {
		sp.objs[i], sp.errs[i] = reg.Backend.(backend.Stager).Stage(ctx)
	}
	if err := ctx.Err(); err != nil {
		sp.abort()
		return nil, err
	}
	if err := s.dropFailed(sp, "stage a pack"); err != nil {
		sp.abort()
		return nil, err
	}
	return sp, nil
}

func (sp *stagedPack) Write(p []byte) (int, error) {
	sp.hash.Write(p)
	sp.n += int64(len(p))
	ok := false
	for i, o := range sp.objs {
		if sp.errs[i] == nil {
			if _, err := o.Write(p); err != nil {
				sp.errs[i] = err
			} else {
				ok = true
			}
		}
	}
	if !ok {
		return 0, fmt.Errorf("repo: write pack: %w", errors.Join(sp.errs...))
	}
	return len(p), nil
}

// sum returns the SHA-256 of the bytes written: the pack's hash.
func (sp *stagedPack) sum() crypt.ID {
	var id crypt.ID
	sp.hash.Sum(id[:0])
	return id
}

// abort discards the pack in every region.
func (sp *stagedPack) abort() {
	for i, o := range sp.objs {
		if o != nil {
			o.Abort()
			sp.objs[i] = nil
		}
	}
}

// commit makes the staged pack durable under name in every region that
// took it whole, concurrently, drops the regions that did not, and fails
// when fewer than the quorum remain (as put does).
func (s *regionSet) commit(ctx context.Context, name string, sp *stagedPack) error {
	var wg sync.WaitGroup
	for i, o := range sp.objs {
		if sp.errs[i] != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sp.errs[i] = o.Commit(ctx, name)
		}()
	}
	wg.Wait()
	sp.abort() // what failed to commit
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.dropFailed(sp, "write "+name)
}

// dropFailed drops every region whose part of sp failed, then checks the
// quorum.
func (s *regionSet) dropFailed(sp *stagedPack, what string) error {
	for i, err := range sp.errs {
		if err != nil {
			s.drop(sp.regions[i], fmt.Errorf("%s: %w", what, err))
		}
	}
	return s.check()
}
