package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"vaultbak/backend"
)

// Mem is an in-memory backend.Backend.
type Mem struct {
	name string

	mu      sync.RWMutex
	objects map[string][]byte
}

var _ backend.Backend = (*Mem)(nil)

// New returns an empty Mem; name appears in Location.
func New(name string) *Mem {
	return &Mem{name: name, objects: make(map[string][]byte)}
}

// Location returns "mem:" followed by the name given to New.
func (m *Mem) Location() string { return "mem:" + m.name }

// Close does nothing; the objects stay readable through Raw.
func (m *Mem) Close() error { return nil }

// Put stores a copy of data under name.
func (m *Mem) Put(ctx context.Context, name string, data []byte) error {
	if err := check(ctx, name); err != nil {
		return fmt.Errorf("mem: put: %w", err)
	}
	m.SetRaw(name, data)
	return nil
}

// Open returns a reader over a copy of the object.
func (m *Mem) Open(ctx context.Context, name string) (backend.Object, error) {
	data, err := m.get(ctx, "open", name)
	if err != nil {
		return nil, err
	}
	return object{bytes.NewReader(data)}, nil
}

// Get returns a reader over a copy of the object.
func (m *Mem) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	data, err := m.get(ctx, "get", name)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (m *Mem) get(ctx context.Context, op, name string) ([]byte, error) {
	if err := check(ctx, name); err != nil {
		return nil, fmt.Errorf("mem: %s: %w", op, err)
	}
	data, ok := m.Raw(name)
	if !ok {
		return nil, fmt.Errorf("mem: %s %s: %w", op, name, backend.ErrNotFound)
	}
	return data, nil
}

// Stat returns the object's size.
func (m *Mem) Stat(ctx context.Context, name string) (backend.Info, error) {
	if err := check(ctx, name); err != nil {
		return backend.Info{}, fmt.Errorf("mem: stat: %w", err)
	}
	m.mu.RLock()
	data, ok := m.objects[name]
	m.mu.RUnlock()
	if !ok {
		return backend.Info{}, fmt.Errorf("mem: stat %s: %w", name, backend.ErrNotFound)
	}
	return backend.Info{Name: name, Size: int64(len(data))}, nil
}

// List calls fn for every object whose name starts with prefix, in name
// order. fn runs without the lock held, so it may call m.
func (m *Mem) List(ctx context.Context, prefix string, fn func(backend.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: list %q: %w", prefix, err)
	}
	var infos []backend.Info
	m.mu.RLock()
	for name, data := range m.objects {
		if strings.HasPrefix(name, prefix) {
			infos = append(infos, backend.Info{Name: name, Size: int64(len(data))})
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(infos, func(a, b backend.Info) int { return strings.Compare(a.Name, b.Name) })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("mem: list %q: %w", prefix, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the object.
func (m *Mem) Delete(ctx context.Context, name string) error {
	if err := check(ctx, name); err != nil {
		return fmt.Errorf("mem: delete: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[name]; !ok {
		return fmt.Errorf("mem: delete %s: %w", name, backend.ErrNotFound)
	}
	delete(m.objects, name)
	return nil
}

// Raw returns a copy of the stored bytes of name, and whether it exists.
func (m *Mem) Raw(name string) ([]byte, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	data, ok := m.objects[name]
	if !ok {
		return nil, false
	}
	return bytes.Clone(data), true
}

// SetRaw stores a copy of data under name without checking the name, to
// plant objects that Put would refuse or to tamper with stored ones.
func (m *Mem) SetRaw(name string, data []byte) {
	data = bytes.Clone(data)
	m.mu.Lock()
	m.objects[name] = data
	m.mu.Unlock()
}

func check(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return backend.ValidName(name)
}

// object adapts a bytes.Reader, whose ReadAt is safe for concurrent use.
type object struct{ r *bytes.Reader }

func (o object) ReadAt(p []byte, off int64) (int, error) { return o.r.ReadAt(p, off) }
func (o object) Size() int64                             { return o.r.Size() }
func (o object) Close() error                            { return nil }
