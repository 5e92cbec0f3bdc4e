package crypt

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"filippo.io/age"
)

// newIdentity returns a fresh identity of kind with its parsed recipient.
func newIdentity(t testing.TB, kind string) (age.Identity, age.Recipient) {
	t.Helper()
	id, rec, err := GenerateIdentity(kind)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRecipient(rec)
	if err != nil {
		t.Fatal(err)
	}
	if RecipientKind(rec) != kind {
		t.Fatalf("RecipientKind(%s…) = %s, want %s", rec[:10], RecipientKind(rec), kind)
	}
	return id, r
}

var kinds = []string{KindHybrid, KindX25519}

func TestSealOpenRoundTrip(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			id1, r1 := newIdentity(t, kind)
			id2, r2 := newIdentity(t, kind)
			for _, n := range []int{0, 1, 100, 64<<10 - 1, 64 << 10, 64<<10 + 1, 200 << 10} {
				plain := randBytes(uint64(n), n)
				sealed, err := Seal(plain, []age.Recipient{r1, r2})
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(sealed, plain[:min(n, 64)]) && n >= 16 {
					t.Fatalf("%d bytes: sealed object contains the plaintext", n)
				}
				// Each recipient alone opens it.
				for i, id := range []age.Identity{id1, id2} {
					got, err := Open(sealed, int64(n), []age.Identity{id})
					if err != nil {
						t.Fatalf("%d bytes, identity %d: %v", n, i, err)
					}
					if !bytes.Equal(got, plain) {
						t.Fatalf("%d bytes, identity %d: plaintext differs", n, i)
					}
				}
				// Sealing is randomised: the same plaintext seals differently.
				again, err := Seal(plain, []age.Recipient{r1})
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Equal(again, sealed) {
					t.Fatalf("%d bytes: two seals are identical", n)
				}
			}
		})
	}
}

func TestSealNeedsRecipients(t *testing.T) {
	if _, err := Seal([]byte("x"), nil); err == nil {
		t.Fatal("Seal with no recipients succeeded")
	}
	_, rh := newIdentity(t, KindHybrid)
	_, rx := newIdentity(t, KindX25519)
	if _, err := Seal([]byte("x"), []age.Recipient{rh, rx}); err == nil {
		t.Fatal("Seal to a hybrid and an X25519 recipient succeeded; age should refuse mixing")
	}
}

func TestOpenWrongIdentity(t *testing.T) {
	for _, kind := range kinds {
		for _, other := range kinds {
			t.Run(kind+"/"+other, func(t *testing.T) {
				_, r := newIdentity(t, kind)
				wrong, _ := newIdentity(t, other)
				sealed, err := Seal([]byte("secret"), []age.Recipient{r})
				if err != nil {
					t.Fatal(err)
				}
				_, err = Open(sealed, 100, []age.Identity{wrong})
				if !errors.Is(err, ErrNoIdentity) {
					t.Fatalf("Open with a wrong identity: %v, want ErrNoIdentity", err)
				}
				if !strings.HasPrefix(err.Error(), "crypt: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				_, err = FileKey(bytes.NewReader(sealed), int64(len(sealed)), []age.Identity{wrong})
				if !errors.Is(err, ErrNoIdentity) {
					t.Fatalf("FileKey with a wrong identity: %v, want ErrNoIdentity", err)
				}
				_, err = Open(sealed, 100, nil)
				if err == nil {
					t.Fatal("Open with no identities succeeded")
				}
			})
		}
	}
}

func TestOpenLimit(t *testing.T) {
	id, r := newIdentity(t, KindX25519)
	for _, n := range []int{0, 1, 1000, 64 << 10, 64<<10 + 1} {
		plain := randBytes(7, n)
		sealed, err := Seal(plain, []age.Recipient{r})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Open(sealed, int64(n), []age.Identity{id}); err != nil || !bytes.Equal(got, plain) {
			t.Errorf("limit = size %d: %v", n, err)
		}
		if n > 0 {
			if _, err := Open(sealed, int64(n-1), []age.Identity{id}); err == nil || !strings.Contains(err.Error(), "limit") {
				t.Errorf("limit = size-1 (%d): %v, want a limit error", n-1, err)
			}
		}
	}
}

func TestOpenAtRandomAccess(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			id, r := newIdentity(t, kind)
			const n = 5*(64<<10) + 777
			plain := randBytes(42, n)
			sealed, err := Seal(plain, []age.Recipient{r})
			if err != nil {
				t.Fatal(err)
			}
			src := bytes.NewReader(sealed)
			key, err := FileKey(src, src.Size(), []age.Identity{id})
			if err != nil {
				t.Fatal(err)
			}
			ra, size, err := OpenAt(src, src.Size(), key)
			if err != nil {
				t.Fatal(err)
			}
			if size != n {
				t.Fatalf("OpenAt size = %d, want %d", size, n)
			}
			check := func(off, l int) {
				t.Helper()
				buf := make([]byte, l)
				m, err := ra.ReadAt(buf, int64(off))
				want := plain[off:min(off+l, n)]
				if m != len(want) || !bytes.Equal(buf[:m], want) {
					t.Fatalf("ReadAt(off %d, len %d) = %d bytes, want %d (err %v)", off, l, m, len(want), err)
				}
				// io.ReaderAt allows io.EOF with a full read that ends at the end.
				if off+l < n && err != nil || off+l == n && err != nil && err != io.EOF {
					t.Fatalf("ReadAt(off %d, len %d): %v", off, l, err)
				}
				if off+l > n && err != io.EOF {
					t.Fatalf("ReadAt(off %d, len %d) past the end: err %v, want io.EOF", off, l, err)
				}
			}
			c := 64 << 10
			for _, off := range []int{0, 1, c - 1, c, c + 1, 2*c - 3, 4*c + 5, n - 1} {
				for _, l := range []int{1, 2, 100, c, c + 2} {
					if off+l <= n {
						check(off, l)
					}
				}
			}
			check(n-10, 20) // crosses the end
			check(0, n)
			rng := rand.New(rand.NewPCG(3, 4))
			for range 300 {
				off := rng.IntN(n)
				check(off, 1+rng.IntN(n-off))
			}
			// The same file key opens the object again without any identity.
			ra2, _, err := OpenAt(src, src.Size(), key)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 10)
			if _, err := ra2.ReadAt(buf, 3*int64(c)); err != nil || !bytes.Equal(buf, plain[3*c:3*c+10]) {
				t.Fatalf("second OpenAt: %v", err)
			}
			// A file key of another object does not open this one.
			other, err := Seal(plain, []age.Recipient{r})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := OpenAt(bytes.NewReader(other), int64(len(other)), key); err == nil {
				t.Fatal("OpenAt with the file key of another object succeeded")
			}
		})
	}
}

// headerEnd returns the offset just past the header's "---" line.
func headerEnd(t testing.TB, sealed []byte) int {
	t.Helper()
	i := bytes.Index(sealed, []byte("\n---"))
	if i < 0 {
		t.Fatal("no header end")
	}
	j := bytes.IndexByte(sealed[i+1:], '\n')
	return i + 1 + j + 1
}

func TestCorruptionIsDetected(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			id, r := newIdentity(t, kind)
			const n = 2*(64<<10) + 99
			plain := randBytes(9, n)
			sealed, err := Seal(plain, []age.Recipient{r})
			if err != nil {
				t.Fatal(err)
			}
			hdr := headerEnd(t, sealed)
			// Every header byte, and a spread of payload bytes.
			var positions []int
			for i := range hdr {
				positions = append(positions, i)
			}
			for i := hdr; i < len(sealed); i += 997 {
				positions = append(positions, i)
			}
			positions = append(positions, len(sealed)-1, hdr, hdr+15, hdr+16)
			for _, pos := range positions {
				for _, flip := range []byte{0x01, 0x80} {
					bad := bytes.Clone(sealed)
					bad[pos] ^= flip
					if got, err := Open(bad, n, []age.Identity{id}); err == nil {
						if pos < hdr && bytes.Equal(got, plain) {
							// age tolerates no change to the header, but a flip
							// in the base64 padding bits cannot exist in canonical
							// encoding; any success with the right plaintext is
							// still a format change worth knowing about.
							t.Errorf("header byte %d ^ %#x accepted", pos, flip)
							continue
						}
						t.Fatalf("byte %d ^ %#x: Open succeeded", pos, flip)
					}
				}
			}
			// Random access: a flipped payload byte fails the read of its chunk
			// (or OpenAt itself, for the last chunk) and leaves others readable.
			src := bytes.NewReader(sealed)
			key, err := FileKey(src, src.Size(), []age.Identity{id})
			if err != nil {
				t.Fatal(err)
			}
			bad := bytes.Clone(sealed)
			bad[hdr+16+100] ^= 1 // inside the first payload chunk (after the 16-byte nonce)
			ra, _, err := OpenAt(bytes.NewReader(bad), int64(len(bad)), key)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 10)
			if _, err := ra.ReadAt(buf, 50); err == nil {
				t.Fatal("ReadAt of a damaged chunk succeeded")
			}
			if _, err := ra.ReadAt(buf, 64<<10+5); err != nil || !bytes.Equal(buf, plain[64<<10+5:64<<10+15]) {
				t.Fatalf("ReadAt of an intact chunk: %v", err)
			}
			// Truncation is detected.
			for _, cut := range []int{1, 17, len(sealed) - hdr - 1} {
				if _, err := Open(sealed[:len(sealed)-cut], n, []age.Identity{id}); err == nil {
					t.Errorf("truncated by %d bytes: Open succeeded", cut)
				}
				tr := sealed[:len(sealed)-cut]
				if _, _, err := OpenAt(bytes.NewReader(tr), int64(len(tr)), key); err == nil {
					t.Errorf("truncated by %d bytes: OpenAt succeeded", cut)
				}
			}
			// Appended bytes are detected.
			if _, err := Open(append(bytes.Clone(sealed), 0), n, []age.Identity{id}); err == nil {
				t.Error("one appended byte: Open succeeded")
			}
		})
	}
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestHeaderWithoutEndIsRefused(t *testing.T) {
	const size = 32 << 20
	big := make([]byte, size)
	copy(big, "age-encryption.org/v1\n-> X25519 ")
	for i := 32; i < size; i++ {
		big[i] = 'A'
	}
	id, _ := newIdentity(t, KindX25519)
	var openErr, keyErr error
	n := allocated(func() { _, openErr = Open(big, 1<<30, []age.Identity{id}) })
	if openErr == nil {
		t.Fatal("Open of a header without an end succeeded")
	}
	if n > 4<<20 {
		t.Errorf("Open allocated %d bytes on a %d-byte input without a header end", n, size)
	}
	n = allocated(func() { _, keyErr = FileKey(bytes.NewReader(big), size, []age.Identity{id}) })
	if keyErr == nil {
		t.Fatal("FileKey of a header without an end succeeded")
	}
	if n > 4<<20 {
		t.Errorf("FileKey allocated %d bytes on a %d-byte input without a header end", n, size)
	}
	// OpenAt does not apply MaxHeaderSize itself (callers run FileKey on the
	// object first, or reuse a file key); it relies on age's own 2 MiB header
	// limit, which costs about 10 MiB of buffers whatever the input size.
	n = allocated(func() { _, _, keyErr = OpenAt(bytes.NewReader(big), size, make([]byte, 16)) })
	if keyErr == nil {
		t.Fatal("OpenAt of a header without an end succeeded")
	}
	if n > 16<<20 {
		t.Errorf("OpenAt allocated %d bytes on a %d-byte input without a header end", n, size)
	}

	// A "---" line just past MaxHeaderSize is refused too.
	_, r := newIdentity(t, KindX25519)
	sealed, err := Seal([]byte("x"), []age.Recipient{r})
	if err != nil {
		t.Fatal(err)
	}
	hdr := headerEnd(t, sealed)
	pad := bytes.Repeat([]byte("A"), MaxHeaderSize)
	far := append(append([]byte("age-encryption.org/v1\n-> pad\n"), pad...), sealed[hdr-50:]...)
	if _, err := Open(far, 10, []age.Identity{id}); err == nil {
		t.Error("Open accepted a header ending beyond MaxHeaderSize")
	}
	if _, err := Open(nil, 10, []age.Identity{id}); err == nil {
		t.Error("Open of nothing succeeded")
	}
}

// A header with many large stanzas but a proper end within MaxHeaderSize is
// accepted: the limit leaves room for dozens of post-quantum recipients.
func TestHeaderManyHybridRecipients(t *testing.T) {
	var recips []age.Recipient
	var last age.Identity
	for range 40 {
		id, r := newIdentity(t, KindHybrid)
		recips = append(recips, r)
		last = id
	}
	sealed, err := Seal([]byte("many recipients"), recips)
	if err != nil {
		t.Fatal(err)
	}
	if h := headerEnd(t, sealed); h > MaxHeaderSize {
		t.Fatalf("40 hybrid stanzas make a %d-byte header, above MaxHeaderSize", h)
	}
	got, err := Open(sealed, 100, []age.Identity{last})
	if err != nil || string(got) != "many recipients" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	src := bytes.NewReader(sealed)
	if _, err := FileKey(src, src.Size(), []age.Identity{last}); err != nil {
		t.Fatal(err)
	}
}
