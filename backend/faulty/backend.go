package faulty

import (
	"context"
	"io"

	"vaultbak/backend"
)

// Location returns the inner backend's location.
func (f *Faulty) Location() string { return f.inner.Location() }

// Close closes the inner backend.
func (f *Faulty) Close() error { return f.inner.Close() }

// Put passes data on unless a fault fails, drops or corrupts it.
func (f *Faulty) Put(ctx context.Context, name string, data []byte) error {
	if flt := f.fire(OpPut, name); flt != nil {
		switch flt.kind {
		case fail:
			return flt.err
		case drop:
			return nil
		case corrupt:
			data = corrupted(data)
		}
	}
	return f.inner.Put(ctx, name, data)
}

// corrupted returns a copy of data with its middle byte inverted, or a single
// byte for empty data.
func corrupted(data []byte) []byte {
	if len(data) == 0 {
		return []byte{0xff}
	}
	c := append([]byte(nil), data...)
	c[len(c)/2] ^= 0xff
	return c
}

// Open passes the call on unless a fault fails it.
func (f *Faulty) Open(ctx context.Context, name string) (backend.Object, error) {
	if flt := f.fire(OpOpen, name); flt != nil {
		return nil, flt.err
	}
	return f.inner.Open(ctx, name)
}

// Get passes the call on unless a fault fails it.
func (f *Faulty) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if flt := f.fire(OpGet, name); flt != nil {
		return nil, flt.err
	}
	return f.inner.Get(ctx, name)
}

// Stat passes the call on unless a fault fails it.
func (f *Faulty) Stat(ctx context.Context, name string) (backend.Info, error) {
	if flt := f.fire(OpStat, name); flt != nil {
		return backend.Info{}, flt.err
	}
	return f.inner.Stat(ctx, name)
}

// List passes the call on unless a fault whose substring is in prefix fails
// it.
func (f *Faulty) List(ctx context.Context, prefix string, fn func(backend.Info) error) error {
	if flt := f.fire(OpList, prefix); flt != nil {
		return flt.err
	}
	return f.inner.List(ctx, prefix, fn)
}

// Delete passes the call on unless a fault fails it.
func (f *Faulty) Delete(ctx context.Context, name string) error {
	if flt := f.fire(OpDelete, name); flt != nil {
		return flt.err
	}
	return f.inner.Delete(ctx, name)
}
