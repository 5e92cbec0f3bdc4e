package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"vaultbak/crypt"
)

// SetRecovery replaces the recovery recipients. Every pack's age header is
// rewrapped to the new set (crypt.Rewrap: the payload is copied, never
// decrypted or re-encrypted), which renames the pack (its name is the hash
// of its bytes); the index is written anew for the new names, the secrets
// are sealed to the new recovery set and the writers, and the config is
// committed; then the old packs, index and key files are deleted. After it,
// a removed recovery identity opens nothing that is stored.
//
// It needs a recovery identity that opens the packs. Run it while no backup
// runs: a pack uploaded meanwhile is sealed to the old set.
// progress, if set, is called after each pack.
func (r *Repository) SetRecovery(ctx context.Context, recovery []string, progress func(done, total int)) error {
	if !r.CanRead() {
		return ErrNeedRecovery
	}
	if len(recovery) == 0 {
		return errors.New("repo: a repository needs at least one recovery recipient")
	}
	recipients, kind, err := crypt.ParseRecipients(recovery)
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	if kind != r.cfg.KeyKind {
		return fmt.Errorf("repo: the repository's keys are %s and its hosts' writer identities too; a %s recipient cannot join them", r.cfg.KeyKind, kind)
	}

	byPack := r.index.entriesByPack()
	packs := make([]crypt.ID, 0, len(byPack))
	for p := range byPack {
		packs = append(packs, p)
	}
	sort.Slice(packs, func(i, j int) bool { return bytes.Compare(packs[i][:], packs[j][:]) < 0 })

	var mu sync.Mutex
	var rewrapped []indexPack
	done := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for _, old := range packs {
		g.Go(func() error {
			sealed, err := r.readPack(gctx, old)
			if err != nil {
				return err
			}
			out, err := crypt.Rewrap(sealed, r.keys.Recovery, recipients)
			if err != nil {
				return fmt.Errorf("repo: rewrap %s: %w", PackName(old), err)
			}
			h := objectHash(out)
			if err := putAll(gctx, r.regions, PackName(h), out); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			rewrapped = append(rewrapped, indexPack{Hash: h, Size: int64(len(out)), Entries: byPack[old]})
			done++
			if progress != nil {
				progress(done, len(packs))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	cfg := r.cloneConfig()
	cfg.Recovery = slices.Clone(recovery)
	// A removed identity may have kept the operator key: retire it at the
	// chain's current position and continue with a new one.
	operatorHead, _, err := r.auditChain(ctx, OperatorSigner)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	for i := range cfg.Operators {
		if cfg.Operators[i].Retired == nil {
			cfg.Operators[i].Retired = &now
			cfg.Operators[i].RetiredAfter = operatorHead.Seq
			cfg.Operators[i].Seed = nil // sealed to the old recipients
		}
	}
	_, operator, err := newOperator(recipients, now)
	if err != nil {
		return err
	}
	cfg.Operators = append(cfg.Operators, operator)
	var files [][]indexPack
	for len(rewrapped) > 0 { // a few hundred packs per index file
		n := min(len(rewrapped), 256)
		files = append(files, rewrapped[:n])
		rewrapped = rewrapped[n:]
	}
	if files == nil {
		files = [][]indexPack{}
	}
	if err := r.commitConfig(ctx, cfg, r.secrets, files...); err != nil {
		return err
	}
	r.recovery = recipients
	for _, reg := range r.regions {
		for _, old := range packs {
			reg.Backend.Delete(ctx, PackName(old))
		}
	}
	// The in-memory index and open packs describe the old names.
	r.index = newIndex()
	for _, f := range files {
		for _, p := range f {
			r.index.add(p.Hash, p.Size, p.Entries)
		}
	}
	r.readers.close()
	r.readers = newPackCache(r)
	return nil
}

// readPack reads a whole pack from the first region holding an intact copy.
func (r *Repository) readPack(ctx context.Context, pack crypt.ID) ([]byte, error) {
	data, _, err := r.readObject(ctx, PackName(pack), MaxObjectSize, func(region string, data []byte) error {
		if objectHash(data) != pack {
			return &IntegrityError{Region: region, Object: PackName(pack), Reason: "content does not match its hash"}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	return data, nil
}
