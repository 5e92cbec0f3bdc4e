package crypt

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

// FuzzOpen feeds arbitrary bytes to Open, FileKey and OpenAt with the golden
// identities. None may panic; a successful Open honours its limit and agrees
// with random access.
func FuzzOpen(f *testing.F) {
	x := loadGoldenIdentity(f, goldenX25519Identity)
	h := loadGoldenIdentity(f, goldenHybridIdentity)
	ids := []age.Identity{x, h}
	xr, _ := IdentityRecipient(x)
	r, err := ParseRecipient(xr)
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range [][]byte{nil, []byte("hello"), seq(64<<10 + 5)} {
		sealed, err := Seal(p, []age.Recipient{r})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed)
	}
	if hy, err := os.ReadFile(goldenSealedHybrid); err == nil {
		f.Add(hy)
	}
	f.Add([]byte("age-encryption.org/v1\n---"))
	f.Add([]byte("age-encryption.org/v1\n-> X25519 AAAA\nAAAA\n--- AAAA\n"))
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		plain, err := Open(data, limit, ids)
		if err == nil && len(plain) > limit {
			t.Fatalf("Open returned %d bytes, above the %d-byte limit", len(plain), limit)
		}
		src := bytes.NewReader(data)
		key, kerr := FileKey(src, src.Size(), ids)
		if kerr != nil {
			if err == nil {
				t.Fatalf("Open succeeded but FileKey failed: %v", kerr)
			}
			return
		}
		ra, n, oerr := OpenAt(src, src.Size(), key)
		if oerr != nil {
			if err == nil {
				t.Fatalf("Open succeeded but OpenAt failed: %v", oerr)
			}
			return
		}
		if n < 0 || n > int64(len(data)) {
			t.Fatalf("OpenAt reports %d plaintext bytes from %d sealed bytes", n, len(data))
		}
		buf := make([]byte, n)
		m, rerr := ra.ReadAt(buf, 0)
		if err == nil {
			if int64(len(plain)) != n || !bytes.Equal(buf[:m], plain) {
				t.Fatalf("Open and OpenAt disagree: %d vs %d bytes (read %d, %v)", len(plain), n, m, rerr)
			}
		}
	})
}

// FuzzParseHostCredential: no panic, a parsed credential survives a
// Marshal/Parse round trip, and no error quotes a whole secret of the seed
// credentials.
func FuzzParseHostCredential(f *testing.F) {
	golden, err := os.ReadFile(goldenHostCredential)
	if err != nil {
		f.Fatal(err)
	}
	gc, err := ParseHostCredential(golden)
	if err != nil {
		f.Fatal(err)
	}
	hc, err := NewHostCredential("h", "r", KindHybrid)
	if err != nil {
		f.Fatal(err)
	}
	var secrets []string
	for _, c := range []*HostCredential{gc, hc} {
		ws := secretOf(c.Writer)
		secrets = append(secrets, ws[strings.LastIndexByte(ws, '1')+1:], strings.TrimPrefix(c.Signing.text(), "VAULTBAK-ED25519-SECRET-KEY-"))
	}
	f.Add(golden)
	f.Add(hc.Marshal(time.Unix(0, 0)))
	f.Add([]byte("host: a\nwriter-identity: x\nsigning-key: y\n"))
	f.Add([]byte("nokey\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseHostCredential(data)
		if err != nil {
			msg := strings.ToUpper(err.Error())
			for _, s := range secrets {
				if strings.Contains(msg, strings.ToUpper(s)) {
					t.Fatalf("error quotes a secret: %q", err)
				}
			}
			return
		}
		if c.Host == "" || c.Writer == nil {
			t.Fatal("parsed a credential without host or writer")
		}
		if _, ok := c.Writer.(interface{ String() string }); !ok {
			return // not a native identity: Marshal cannot write it
		}
		back, err := ParseHostCredential(c.Marshal(time.Unix(0, 0)))
		if err != nil {
			// A host or repository value that changes meaning when written
			// back (a newline cannot be in a scanned line) is not expected.
			t.Fatalf("Marshal of a parsed credential does not parse: %v", err)
		}
		if back.Host != c.Host || back.Repository != c.Repository || back.Signing.Public() != c.Signing.Public() || back.WriterRecipient != c.WriterRecipient {
			t.Fatalf("round trip changed the credential: %+v vs %+v", back, c)
		}
	})
}

// FuzzParseID: no panic; a parsed ID prints as the lower-case input.
func FuzzParseID(f *testing.F) {
	f.Add(strings.Repeat("ab", IDSize))
	f.Add("")
	f.Add(strings.Repeat("AB", IDSize))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if len(err.Error()) > 400 { // 70 input bytes, each at most 4 when quoted
				t.Fatalf("%d-byte error", len(err.Error()))
			}
			return
		}
		if id.String() != strings.ToLower(s) {
			t.Fatalf("ParseID(%q).String() = %q", s, id)
		}
	})
}

// FuzzParseRecipient: no panic, and a string that looks like a secret key is
// never quoted back.
func FuzzParseRecipient(f *testing.F) {
	_, h, _ := GenerateIdentity(KindHybrid)
	_, x, _ := GenerateIdentity(KindX25519)
	f.Add(h)
	f.Add(x)
	f.Add("AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecipient(s)
		if err == nil {
			if r == nil {
				t.Fatal("nil recipient without an error")
			}
			return
		}
		if strings.Contains(strings.ToUpper(s), "SECRET-KEY") && len(strings.TrimSpace(s)) > 20 && strings.Contains(err.Error(), strings.TrimSpace(s)[:20]) {
			t.Fatalf("error quotes a secret-looking input: %q", err)
		}
	})
}
