package mem_test

import (
	"bytes"
	"testing"

	"vaultbak/backend"
	"vaultbak/backend/backendtest"
	"vaultbak/backend/mem"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return mem.New(t.Name()) })
}

func TestRawSetRaw(t *testing.T) {
	m := mem.New("raw")
	if err := m.Put(t.Context(), "data/ab/p", []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	raw, ok := m.Raw("data/ab/p")
	if !ok || string(raw) != "sealed" {
		t.Fatalf("Raw = %q, %v", raw, ok)
	}
	raw[0] = 'X' // must not reach the store
	m.SetRaw("data/ab/p", []byte("tampered"))
	got, err := backend.ReadAll(t.Context(), m, "data/ab/p", 100)
	if err != nil || !bytes.Equal(got, []byte("tampered")) {
		t.Fatalf("ReadAll after SetRaw = %q, %v", got, err)
	}
	if _, ok := m.Raw("missing"); ok {
		t.Error("Raw of a missing object reported it present")
	}
}
