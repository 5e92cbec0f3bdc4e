package faulty_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"vaultbak/backend"
	"vaultbak/backend/backendtest"
	"vaultbak/backend/faulty"
	"vaultbak/backend/mem"
)

var errInjected = errors.New("injected")

// A Faulty without faults is a conforming Backend.
func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return faulty.New(mem.New(t.Name()))
	})
}

func TestFaultFiresTimesThenPasses(t *testing.T) {
	ctx := t.Context()
	f := faulty.New(mem.New("m"))
	f.AddFault(faulty.OpPut, "data/", errInjected, 2)
	for i := range 2 {
		if err := f.Put(ctx, "data/ab/p", []byte("x")); !errors.Is(err, errInjected) {
			t.Fatalf("Put %d = %v, want the injected error", i, err)
		}
	}
	if err := f.Put(ctx, "data/ab/p", []byte("x")); err != nil {
		t.Fatalf("Put after the fault ran out: %v", err)
	}
	f.VerifyAllFired(t)
}

func TestFaultMatchesOpAndSubstring(t *testing.T) {
	ctx := t.Context()
	m := mem.New("m")
	f := faulty.New(m)
	for _, name := range []string{"config", "data/ab/p", "snapshots/s1"} {
		if err := f.Put(ctx, name, []byte(name)); err != nil {
			t.Fatal(err)
		}
	}
	f.AddFault(faulty.OpGet, "snapshots/", errInjected, -1)
	f.AddFault(faulty.OpOpen, "data/", errInjected, -1)
	f.AddFault(faulty.OpStat, "config", errInjected, -1)
	f.AddFault(faulty.OpDelete, "data/", errInjected, -1)
	f.AddFault(faulty.OpList, "snap", errInjected, -1)

	calls := []struct {
		desc string
		call func() error
		fail bool
	}{
		{"Get snapshots/s1", func() error { _, err := f.Get(ctx, "snapshots/s1"); return err }, true},
		{"Get config", func() error { _, err := f.Get(ctx, "config"); return err }, false},
		{"Open data/ab/p", func() error { _, err := f.Open(ctx, "data/ab/p"); return err }, true},
		{"Open snapshots/s1", func() error { _, err := f.Open(ctx, "snapshots/s1"); return err }, false},
		{"Stat config", func() error { _, err := f.Stat(ctx, "config"); return err }, true},
		{"Stat data/ab/p", func() error { _, err := f.Stat(ctx, "data/ab/p"); return err }, false},
		{"Delete data/ab/p", func() error { return f.Delete(ctx, "data/ab/p") }, true},
		{"List snapshots/", func() error { return f.List(ctx, "snapshots/", nop) }, true},
		{"List data/", func() error { return f.List(ctx, "data/", nop) }, false},
		{"Delete config", func() error { return f.Delete(ctx, "config") }, false},
	}
	for range 3 { // forever faults keep firing
		for _, c := range calls {
			err := c.call()
			if c.fail && !errors.Is(err, errInjected) {
				t.Errorf("%s = %v, want the injected error", c.desc, err)
			} else if !c.fail && err != nil {
				t.Errorf("%s = %v, want success", c.desc, err)
			}
		}
		if err := f.Put(ctx, "config", []byte("config")); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := m.Raw("data/ab/p"); !ok {
		t.Error("a failed Delete reached the inner backend")
	}
	f.VerifyAllFired(t)
}

func nop(backend.Info) error { return nil }

func TestFaultsFireInOrder(t *testing.T) {
	errFirst, errSecond := errors.New("first"), errors.New("second")
	f := faulty.New(mem.New("m"))
	f.AddFault(faulty.OpStat, "", errFirst, 1)
	f.AddFault(faulty.OpStat, "", errSecond, 1)
	for _, want := range []error{errFirst, errSecond, backend.ErrNotFound} {
		if _, err := f.Stat(t.Context(), "x"); !errors.Is(err, want) {
			t.Errorf("Stat = %v, want %v", err, want)
		}
	}
	f.VerifyAllFired(t)
}

func TestDrop(t *testing.T) {
	ctx := t.Context()
	m := mem.New("m")
	f := faulty.New(m)
	f.AddDrop("data/", 1)
	if err := f.Put(ctx, "data/ab/p", []byte("pack")); err != nil {
		t.Fatalf("dropped Put = %v, want nil", err)
	}
	if _, err := f.Stat(ctx, "data/ab/p"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat after a dropped Put = %v, want ErrNotFound", err)
	}
	if err := f.Put(ctx, "data/ab/p", []byte("pack")); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Raw("data/ab/p"); string(got) != "pack" {
		t.Errorf("second Put stored %q, want %q", got, "pack")
	}
	f.VerifyAllFired(t)
}

func TestCorruptPut(t *testing.T) {
	ctx := t.Context()
	m := mem.New("m")
	f := faulty.New(m)
	f.AddCorruptPut("data/", 2)
	for _, data := range [][]byte{[]byte("0123456789"), nil} {
		orig := bytes.Clone(data)
		if err := f.Put(ctx, "data/ab/p", data); err != nil {
			t.Fatalf("corrupted Put = %v, want nil", err)
		}
		if !bytes.Equal(data, orig) {
			t.Errorf("corrupted Put changed the caller's slice")
		}
		got, _ := m.Raw("data/ab/p")
		if diff := differingBytes(got, orig); diff != 1 {
			t.Errorf("stored %q for %q: %d bytes differ, want 1", got, orig, diff)
		}
	}
	if err := f.Put(ctx, "data/ab/p", []byte("clean")); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Raw("data/ab/p"); string(got) != "clean" {
		t.Errorf("Put after the fault ran out stored %q", got)
	}
	f.VerifyAllFired(t)
}

// differingBytes counts positions where a and b differ, a missing byte
// counting as a difference.
func differingBytes(a, b []byte) int {
	n := max(len(a), len(b)) - min(len(a), len(b))
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// recorder captures failures reported to it instead of failing the test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestVerifyAllFired(t *testing.T) {
	f := faulty.New(mem.New("m"))
	f.AddFault(faulty.OpPut, "fired", errInjected, 1)
	f.AddFault(faulty.OpGet, "never", errInjected, 3)
	f.AddDrop("never-dropped", 1)
	f.AddFault(faulty.OpStat, "forever", errInjected, -1) // may never fire
	if err := f.Put(t.Context(), "fired", nil); !errors.Is(err, errInjected) {
		t.Fatalf("Put = %v, want the injected error", err)
	}

	r := &recorder{TB: t}
	f.VerifyAllFired(r)
	if len(r.errors) != 2 {
		t.Fatalf("VerifyAllFired reported %d faults, want 2: %q", len(r.errors), r.errors)
	}
	for i, want := range []string{`fail Get on names containing "never"`, `drop Put on names containing "never-dropped"`} {
		if !strings.Contains(r.errors[i], want) {
			t.Errorf("report %q does not contain %q", r.errors[i], want)
		}
	}
}
