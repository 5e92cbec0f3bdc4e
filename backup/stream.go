package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"time"

	"vaultbak/chunk"
	"vaultbak/crypt"
	"vaultbak/repo"
)

// Stream backs up everything read from src as one file called name at the
// root of a new snapshot. Memory does not grow with the stream: chunks are
// stored as they are read. A read error from src commits nothing.
func Stream(ctx context.Context, r *repo.Repository, name string, src io.Reader, opts Options, progress *Progress) (*Result, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("backup: stream name %q must be a plain file name", name)
	}
	if progress == nil {
		progress = &Progress{}
	}
	if opts.Time.IsZero() {
		opts.Time = time.Now()
	}
	w, err := r.NewWriter(ctx, repo.WriterOptions{Quorum: opts.Quorum})
	if err != nil {
		return nil, err
	}
	ch, err := chunk.New(r.Config().Chunker, w.Secrets().ChunkerKey(), nil)
	if err != nil {
		w.Abort()
		return nil, err
	}
	ch.Reset(src)
	h := w.Secrets().ContentKey().New()
	defer w.Secrets().ContentKey().Release(h)
	var content []crypt.ID
	var size uint64
	// Chunks are compressed and packed on other goroutines while this one
	// keeps reading: a stream's producer (pg_dump) never waits for them
	// unless every slot is taken. A chunk that cannot be stored stops the
	// reading at once.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	saver := newChunkSaver(ctx, w)
	saves := &saveGroup{fail: cancel}
	for ctx.Err() == nil {
		data, err := ch.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			saves.wait()
			w.Abort()
			return nil, fmt.Errorf("backup: read %s: %w", name, err)
		}
		h.Write(data)
		id := w.Secrets().BlobID(data)
		if !w.Known(id) {
			saver.save(saves, id, data)
		}
		content = append(content, id)
		size += uint64(len(data))
		progress.ReadBytes.Add(uint64(len(data)))
		progress.Bytes.Add(uint64(len(data)))
	}
	if err := saves.wait(); err != nil {
		w.Abort()
		return nil, err
	}
	if err := context.Cause(ctx); err != nil {
		w.Abort()
		return nil, err
	}
	var sum crypt.ID
	h.Sum(sum[:0])
	node := repo.Node{
		Name: []byte(name), Type: repo.NodeFile, Mode: 0o600,
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		MTime: opts.Time.UnixNano(), Size: size, Content: content, Hash: &sum,
	}
	tree, err := repo.EncodeTree(&repo.Tree{Nodes: []repo.Node{node}})
	if err != nil {
		w.Abort()
		return nil, err
	}
	root, err := w.SaveBlob(ctx, repo.TreeBlob, tree)
	if err != nil {
		w.Abort()
		return nil, err
	}
	progress.Files.Add(1)
	m := &repo.Manifest{
		Time: opts.Time.UTC(), Tags: opts.Tags, Set: opts.Set, Tree: root,
		Stats:  repo.Stats{Files: 1, Bytes: size},
		PrevIn: maps.Clone(opts.HeadHeld),
	}
	snap, err := w.Commit(ctx, m, &repo.ManifestBody{Stream: name}, opts.HeadSeq, opts.HeadID)
	if err != nil {
		return nil, err
	}
	return &Result{Snapshot: snap, Lagging: w.Lagging()}, nil
}
