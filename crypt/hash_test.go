package crypt

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// seq returns n bytes of the BLAKE3 test-vector input: byte i is i % 251.
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// randBytes returns n deterministic pseudo-random bytes named by seed.
func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	rand.NewChaCha8(s).Read(b)
	return b
}

func keyFrom(s string) Key {
	var k Key
	if len(s) != KeySize {
		panic("test key must be 32 bytes")
	}
	copy(k[:], s)
	return k
}

// The official BLAKE3 keyed-hash test vectors (first 32 bytes of each
// extended output), from BLAKE3-team/BLAKE3 test_vectors.json: key "whats
// the Elvish word for friend", input byte i = i % 251. They pin Key.Sum to
// BLAKE3 itself, not only to whatever the library did when the golden file
// was written.
func TestSumOfficialBLAKE3Vectors(t *testing.T) {
	k := keyFrom("whats the Elvish word for friend")
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"},
		{1, "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b"},
		{1023, "c951ecdf03288d0fcc96ee3413563d8a6d3589547f2c2fb36d9786470f1b9d6e"},
		{1024, "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4"},
		{1025, "357dc55de0c7e382c900fd6e320acc04146be01db6a8ce7210b7189bd664ea69"},
		{8193, "954a2a75420c8d6547e3ba5b98d963e6fa6491addc8c023189cc519821b4a1f5"},
		{31744, "efa53b389ab67c593dba624d898d0f7353ab99e4ac9d42302ee64cbf9939a419"},
	} {
		if got := k.Sum(seq(tc.n)).String(); got != tc.want {
			t.Errorf("Sum(%d bytes) = %s, want %s", tc.n, got, tc.want)
		}
	}
}

func TestSumEqualsStreaming(t *testing.T) {
	k := keyFrom("vaultbak test key, 32 bytes long")
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 63, 64, 65, 1023, 1024, 1025, 4096, 64 << 10, 1<<20 + 3} {
		data := randBytes(uint64(n), n)
		want := k.Sum(data)

		h := k.New()
		if h.Size() != IDSize {
			t.Fatalf("New().Size() = %d, want %d", h.Size(), IDSize)
		}
		for rest := data; len(rest) > 0; {
			m := min(len(rest), 1+rng.IntN(5000))
			h.Write(rest[:m])
			rest = rest[m:]
		}
		var got ID
		h.Sum(got[:0])
		if got != want {
			t.Errorf("%d bytes: streaming %s, Sum %s", n, got, want)
		}
		// Sum does not change the state: more data continues the stream.
		h.Write([]byte("x"))
		var more ID
		h.Sum(more[:0])
		if more != k.Sum(append(bytes.Clone(data), 'x')) {
			t.Errorf("%d bytes: Sum disturbed the streaming state", n)
		}
	}
}

func TestSumDependsOnKey(t *testing.T) {
	data := []byte("the same plaintext")
	a := keyFrom("key A, thirty-two bytes long....")
	b := a
	b[31] ^= 1
	if a.Sum(data) == b.Sum(data) {
		t.Fatal("keys that differ in one bit give the same hash")
	}
	if first, again := a.Sum(data), a.Sum(data); first != again {
		t.Fatal("Sum is not deterministic")
	}
	if a.Sum(data) == a.Sum(append(bytes.Clone(data), 0)) {
		t.Fatal("Sum ignores a trailing byte")
	}
	if k1, k2 := NewKey(), NewKey(); k1 == k2 {
		t.Fatal("NewKey returned the same key twice")
	}
}

func TestDeriveSeparatesDomains(t *testing.T) {
	k := keyFrom("vaultbak test key, 32 bytes long")
	purposes := []string{"blob id", "chunker gear table", "file content", "config mac", "", "blob", "blob id ", "Blob id"}
	seen := map[Key]string{k: "the master key itself"}
	for _, p := range purposes {
		d := k.Derive(p)
		if d != k.Derive(p) {
			t.Errorf("Derive(%q) is not deterministic", p)
		}
		if other, dup := seen[d]; dup {
			t.Errorf("Derive(%q) equals %s", p, other)
		}
		seen[d] = "Derive(" + p + ")"
		// A derived key hashes differently from the master key.
		if d.Sum([]byte("x")) == k.Sum([]byte("x")) {
			t.Errorf("Derive(%q) hashes like the master key", p)
		}
	}
	k2 := k
	k2[0] ^= 0x80
	if k.Derive("blob id") == k2.Derive("blob id") {
		t.Error("Derive ignores the key")
	}
}

func TestIDTextRoundTrip(t *testing.T) {
	k := keyFrom("vaultbak test key, 32 bytes long")
	for _, id := range []ID{{}, k.Sum(nil), k.Sum([]byte("a"))} {
		s := id.String()
		if len(s) != 2*IDSize || s != strings.ToLower(s) {
			t.Fatalf("String() = %q, want %d lower-case hex digits", s, 2*IDSize)
		}
		got, err := ParseID(s)
		if err != nil || got != id {
			t.Fatalf("ParseID(%q) = %v, %v", s, got, err)
		}
		txt, err := id.MarshalText()
		if err != nil || string(txt) != s {
			t.Fatalf("MarshalText = %q, %v", txt, err)
		}
		var back ID
		if err := back.UnmarshalText(txt); err != nil || back != id {
			t.Fatalf("UnmarshalText(%q) = %v, %v", txt, back, err)
		}
		// IDs embed in JSON as hex strings (trees and manifests rely on it).
		j, err := json.Marshal(struct{ ID ID }{id})
		if err != nil || string(j) != `{"ID":"`+s+`"}` {
			t.Fatalf("json = %s, %v", j, err)
		}
		var v struct{ ID ID }
		if err := json.Unmarshal(j, &v); err != nil || v.ID != id {
			t.Fatalf("json round trip = %v, %v", v.ID, err)
		}
		if id.IsZero() != (id == ID{}) {
			t.Fatalf("IsZero(%s) = %v", id, id.IsZero())
		}
	}
	// Upper-case hex names the same ID.
	id := k.Sum(nil)
	if got, err := ParseID(strings.ToUpper(id.String())); err != nil || got != id {
		t.Errorf("ParseID(upper case) = %v, %v", got, err)
	}
}

func TestParseIDRejects(t *testing.T) {
	valid := strings.Repeat("ab", IDSize)
	long := strings.Repeat("f", 10000)
	for _, s := range []string{
		"",
		"ab",
		valid[:63],
		valid + "a",
		valid + "ab",
		"zz" + valid[2:],
		"0x" + valid[2:],
		" " + valid[1:],
		valid[:62] + "é",
		long,
	} {
		id, err := ParseID(s)
		if err == nil {
			t.Errorf("ParseID(%.20q…) = %v, want an error", s, id)
			continue
		}
		if !strings.HasPrefix(err.Error(), "crypt: ") {
			t.Errorf("error %q lacks the package prefix", err)
		}
		if len(err.Error()) > 400 { // 70 input bytes, each at most 4 when quoted
			t.Errorf("error for a %d-byte input is %d bytes long: untrusted input must be truncated", len(s), len(err.Error()))
		}
		var v ID
		if err := v.UnmarshalText([]byte(s)); err == nil {
			t.Errorf("UnmarshalText(%.20q…) accepted", s)
		}
		if err := json.Unmarshal([]byte(`"`+s+`"`), &v); err == nil {
			t.Errorf("json.Unmarshal(%.20q…) accepted", s)
		}
	}
}
