package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// ErrNotFound is returned (wrapped) by Open, Get, Stat and Delete when the
// named object does not exist. Test for it with errors.Is.
var ErrNotFound = errors.New("object not found")

// Info describes one stored object.
type Info struct {
	Name string // full object name, e.g. "data/ab/ab12…"
	Size int64  // size in bytes
}

// Object is an open stored object that can be read at any offset, possibly
// concurrently. The caller closes it.
type Object interface {
	io.ReaderAt
	io.Closer
	// Size is the object's size in bytes, as stored.
	Size() int64
}

// ErrWrongSize is returned (wrapped) by reads of an object opened with
// [SizedOpener.OpenSized] whose stored size is not the size given.
var ErrWrongSize = errors.New("stored size differs from the expected size")

// SizedOpener is implemented by backends that can open an object whose size
// the caller already knows without asking the storage for it (on S3 a stat
// is one round trip more before the first byte). Nothing is checked at
// open: the first read that reaches the storage reports a missing object
// (wrapping ErrNotFound) or a stored size other than size (wrapping
// ErrWrongSize). The returned object's Size is size.
type SizedOpener interface {
	OpenSized(ctx context.Context, name string, size int64) (Object, error)
}

// Streamer is implemented by objects that read a long range faster as one
// sequential stream than as separate ReadAt calls (on S3 each ReadAt is one
// request, paying its latency). Stream returns the bytes [off, end) of the
// object, 0 <= off < end <= Size(), to be read in order; the caller closes
// it, possibly before its end. A stream buffers no more than the transport
// does (the rest waits in the connection), and is safe to use while other
// reads of the object go on. Errors follow ReadAt's: a missing object wraps
// ErrNotFound, a short object ErrWrongSize or io.ErrUnexpectedEOF.
type Streamer interface {
	Stream(off, end int64) (io.ReadCloser, error)
}

// Backend is one region's storage: a flat namespace of immutable objects
// named by slash-separated paths ("config", "keys/<id>", "data/ab/<hash>").
//
// The contract every implementation keeps (the conformance suite in
// backendtest checks it):
//   - Put stores data under name atomically: a concurrent or later reader sees
//     either nothing or all of data, never a prefix. When Put returns nil the
//     object is durable (local: fsynced file and directory). Put of an existing
//     name replaces it. Put never retains data after it returns, so the caller
//     may reuse the slice; callers pass the whole object so that every region
//     and every retry reads it independently.
//   - Open, Get and Stat return an error wrapping ErrNotFound for a missing
//     object.
//   - List calls fn for every object whose name starts with prefix, in no
//     particular order; an error from fn stops the listing and is returned.
//     Objects put or deleted during a listing may or may not be seen.
//   - Delete of a missing object returns an error wrapping ErrNotFound.
//   - Implementations do not retry; retrying is a wrapper's job.
//   - All methods are safe for concurrent use.
type Backend interface {
	// Location names the region's storage for messages (a path or URL,
	// never a credential).
	Location() string
	Put(ctx context.Context, name string, data []byte) error
	Open(ctx context.Context, name string) (Object, error)
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	Stat(ctx context.Context, name string) (Info, error)
	List(ctx context.Context, prefix string, fn func(Info) error) error
	Delete(ctx context.Context, name string) error
	// Close releases resources held by the backend.
	Close() error
}

// ValidName reports whether name is an acceptable object name: non-empty,
// relative, slash-separated, with no empty, "." or ".." element and no
// backslash or NUL. Every implementation rejects other names, so an object
// name read from an untrusted region can never escape the repository.
func ValidName(name string) error {
	if name == "" {
		return errors.New("backend: empty object name")
	}
	if strings.ContainsAny(name, "\\\x00") {
		return fmt.Errorf("backend: invalid object name %q", name)
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return fmt.Errorf("backend: invalid object name %q", name)
		}
	}
	return nil
}

// Lock is a retention lock (S3 Object Lock) on the objects a repository
// writes under some prefixes: each is kept from deletion and from being
// overwritten for Period after its Put. In governance mode an account
// allowed to bypass governance retention can still remove it; in
// compliance mode nobody can until the period ends.
type Lock struct {
	Mode     string // LockGovernance or LockCompliance
	Period   time.Duration
	Prefixes []string // names under these prefixes are locked
}

// The lock modes.
const (
	LockGovernance = "governance"
	LockCompliance = "compliance"
)

// Covers reports whether name is locked under l.
func (l Lock) Covers(name string) bool {
	for _, p := range l.Prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ErrNoLock is returned (wrapped) by CheckLock when the storage cannot hold
// locks.
var ErrNoLock = errors.New("cannot hold object locks")

// Locker is implemented by backends that can hold retention locks.
type Locker interface {
	// SetLock makes later Puts of the names l covers lock what they store.
	SetLock(l Lock)
	// CheckLock returns an error saying why the storage cannot hold locks
	// (on S3: the bucket was not created with Object Lock), nil if it can.
	CheckLock(ctx context.Context) error
}

// ErrTooLarge is returned (wrapped) by ReadAll for an object larger than the
// limit given.
var ErrTooLarge = errors.New("object larger than the limit")

// ReadAll reads a whole object, refusing objects larger than limit bytes so
// that an untrusted region cannot make the caller allocate without bound.
func ReadAll(ctx context.Context, b Backend, name string, limit int64) ([]byte, error) {
	rc, err := b.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	n := limit
	if n < math.MaxInt64 {
		n++ // one byte more than allowed, to detect an oversized object
	}
	data, err := io.ReadAll(io.LimitReader(rc, n))
	if err != nil {
		return nil, fmt.Errorf("backend: read %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("backend: read %s: %w of %d bytes", name, ErrTooLarge, limit)
	}
	return data, nil
}
