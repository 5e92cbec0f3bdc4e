package backend

import (
	"context"
	"time"
)

// Sweeper is implemented by a backend that writes each object through a
// temporary file beside it ([vaultbak/backend/local]). A write cut short
// (SIGKILL, power loss, a directory that vanished) leaves that file behind:
// no List shows it, and only the backend knows its names. S3 regions have
// no such leftovers: every object is one PUT request, never a multipart
// upload (see [vaultbak/backend/s3]).
//
// A temporary file may as well be an object that a writer, in this process
// or on another host sharing the directory, is writing right now; only its
// age tells them apart, by the backend's rule (Strays.StaleAfter).
type Sweeper interface {
	// Strays counts the temporary files present, those being written
	// included.
	Strays(ctx context.Context) (Strays, error)
	// Sweep removes the temporary files no writer can still be writing
	// (the stale ones) and counts what it removed in Files and Bytes.
	Sweep(ctx context.Context) (Strays, error)
}

// Strays counts temporary files in a region.
type Strays struct {
	Files int   // how many
	Bytes int64 // their total size
	// Stale of them, StaleBytes in all, went unchanged for longer than
	// StaleAfter: what Sweep removes.
	Stale      int
	StaleBytes int64
	StaleAfter time.Duration
}
