package backend

import (
	"context"
	"io"
)

// Stager is implemented by a backend that can take an object in pieces
// before its name is known: a local directory writes it to a temporary
// file and renames the file on Commit. A writer that seals packs as they
// fill streams them to such regions instead of holding each pack in
// memory until its name (the hash of its bytes) is known.
type Stager interface {
	// CanStage reports whether Stage works (a wrapper can stage only when
	// the backend it wraps can).
	CanStage() bool
	Stage(ctx context.Context) (Staged, error)
}

// Staged is an object being written. Write appends to it. Commit makes it
// durable under name with Put's guarantees (atomic, durable once it
// returns) and ends it; Abort discards it. After a failed Write or Commit,
// call Abort; Abort after Commit succeeded does nothing.
type Staged interface {
	io.Writer
	Commit(ctx context.Context, name string) error
	Abort()
}
