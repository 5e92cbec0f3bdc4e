package crypt

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ (new keys, new sealed vectors)")

// Golden files. The identities and the host credential are TEST KEYS,
// published with the source: they protect nothing.
const (
	goldenX25519Identity = "testdata/TEST-KEY-x25519.identity"
	goldenHybridIdentity = "testdata/TEST-KEY-hybrid.identity"
	goldenHostCredential = "testdata/TEST-KEY-host.credential"
	goldenSealedX25519   = "testdata/sealed-x25519-opens.age"
	goldenSealedHybrid   = "testdata/sealed-hybrid-opens.age"
	goldenKeyedHash      = "testdata/keyed-hash.json"
	goldenSignatures     = "testdata/signatures.json"
)

const testKeyWarning = "# TEST KEY, published in the vaultbak source tree. It protects nothing: never use it for real data.\n"

// goldenPlaintext is the plaintext of the sealed golden vectors: a text line
// then byte i = i % 251, n bytes in all.
func goldenPlaintext(n int) []byte {
	p := seq(n)
	copy(p, "vaultbak golden sealed object, age v1\n")
	return p
}

// Sizes of the golden plaintexts: the X25519 one spans two 64 KiB payload
// chunks, so random access across a chunk boundary is frozen too.
const (
	goldenX25519Size = 64<<10 + 1000
	goldenHybridSize = 1000
)

func writeGolden(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./crypt -run Golden -update to create it)", err)
	}
	return data
}

func loadGoldenIdentity(t testing.TB, path string) age.Identity {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := ParseIdentities(data)
	if err != nil || len(ids) != 1 {
		t.Fatalf("%s: %d identities, %v", path, len(ids), err)
	}
	return ids[0]
}

func updateSealedGolden(t *testing.T) {
	for _, g := range []struct {
		kind, idPath, sealedPath string
		size                     int
	}{
		{KindX25519, goldenX25519Identity, goldenSealedX25519, goldenX25519Size},
		{KindHybrid, goldenHybridIdentity, goldenSealedHybrid, goldenHybridSize},
	} {
		id, rec, err := GenerateIdentity(g.kind)
		if err != nil {
			t.Fatal(err)
		}
		writeGolden(t, g.idPath, append([]byte(testKeyWarning), IdentityFile(id, rec, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))...))
		r, err := ParseRecipient(rec)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := Seal(goldenPlaintext(g.size), []age.Recipient{r})
		if err != nil {
			t.Fatal(err)
		}
		writeGolden(t, g.sealedPath, sealed)
	}
}

// The sealed format is age v1: these objects were sealed by an earlier
// build and every later one must open them.
func TestGoldenSealedObjects(t *testing.T) {
	if *update {
		updateSealedGolden(t)
	}
	for _, g := range []struct {
		kind, idPath, sealedPath, stanza string
		size                             int
	}{
		{KindX25519, goldenX25519Identity, goldenSealedX25519, "X25519", goldenX25519Size},
		{KindHybrid, goldenHybridIdentity, goldenSealedHybrid, "mlkem768x25519", goldenHybridSize},
	} {
		t.Run(g.kind, func(t *testing.T) {
			id := loadGoldenIdentity(t, g.idPath)
			if !strings.HasPrefix(string(readGolden(t, g.idPath)), testKeyWarning) {
				t.Errorf("%s does not start with the test-key warning", g.idPath)
			}
			sealed := readGolden(t, g.sealedPath)
			if !bytes.HasPrefix(sealed, []byte("age-encryption.org/v1\n-> "+g.stanza+" ")) {
				t.Fatalf("%s: header %.40q, want an age v1 header with one %s stanza", g.sealedPath, sealed, g.stanza)
			}
			want := goldenPlaintext(g.size)
			got, err := Open(sealed, int64(g.size), []age.Identity{id})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("golden plaintext differs")
			}
			src := bytes.NewReader(sealed)
			key, err := FileKey(src, src.Size(), []age.Identity{id})
			if err != nil {
				t.Fatal(err)
			}
			ra, n, err := OpenAt(src, src.Size(), key)
			if err != nil || n != int64(g.size) {
				t.Fatalf("OpenAt = %d, %v", n, err)
			}
			for _, off := range []int{0, 500, g.size - 10, 64<<10 - 5} {
				if off < 0 || off+10 > g.size {
					continue
				}
				buf := make([]byte, 10)
				if _, err := ra.ReadAt(buf, int64(off)); err != nil && !(err == io.EOF && off+10 == g.size) || !bytes.Equal(buf, want[off:off+10]) {
					t.Errorf("ReadAt(%d) = %v", off, err)
				}
			}
			// The other golden identity is the wrong one.
			other := goldenHybridIdentity
			if g.idPath == goldenHybridIdentity {
				other = goldenX25519Identity
			}
			if _, err := Open(sealed, int64(g.size), []age.Identity{loadGoldenIdentity(t, other)}); err == nil {
				t.Error("the other golden identity opened the object")
			}
		})
	}
}

// keyedHashVectors is the golden file of keyed hashes and derived keys.
type keyedHashVectors struct {
	Comment string            `json:"comment"`
	Key     string            `json:"key"` // hex
	Sums    []sumVector       `json:"sums"`
	Derive  map[string]string `json:"derive"` // purpose → hex key
	// DerivedSum is Derive("blob id").Sum("vaultbak"): what a chunk ID is.
	DerivedSum string `json:"derived_sum"`
}

type sumVector struct {
	Input string `json:"input"` // "seq:N" (byte i = i % 251) or a literal
	Sum   string `json:"sum"`
}

func vectorInput(s string) []byte {
	var n int
	if _, err := fmt.Sscanf(s, "seq:%d", &n); err == nil {
		return seq(n)
	}
	return []byte(s)
}

// Purposes the repository derives keys for (repo/secrets.go, repo/config.go):
// changing Derive changes every chunk ID and the config MAC.
var derivePurposes = []string{"blob id", "chunker gear table", "file content", "config mac"}

func computeKeyedHashVectors(key Key, inputs []string) keyedHashVectors {
	v := keyedHashVectors{
		Comment: "vaultbak keyed BLAKE3 (crypt.Key.Sum) and crypt.Key.Derive outputs; part of the repository format",
		Key:     hex.EncodeToString(key[:]),
		Derive:  map[string]string{},
	}
	for _, in := range inputs {
		v.Sums = append(v.Sums, sumVector{Input: in, Sum: key.Sum(vectorInput(in)).String()})
	}
	for _, p := range derivePurposes {
		d := key.Derive(p)
		v.Derive[p] = hex.EncodeToString(d[:])
	}
	d := key.Derive("blob id")
	v.DerivedSum = d.Sum([]byte("vaultbak")).String()
	return v
}

func TestGoldenKeyedHash(t *testing.T) {
	var key Key
	for i := range key {
		key[i] = byte(i)
	}
	inputs := []string{"", "vaultbak", "seq:1000", "seq:1025", "seq:100000"}
	if *update {
		data, err := json.MarshalIndent(computeKeyedHashVectors(key, inputs), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		writeGolden(t, goldenKeyedHash, append(data, '\n'))
	}
	var want keyedHashVectors
	if err := json.Unmarshal(readGolden(t, goldenKeyedHash), &want); err != nil {
		t.Fatal(err)
	}
	var wantKey Key
	if b, err := hex.DecodeString(want.Key); err != nil || len(b) != KeySize {
		t.Fatalf("golden key %q: %v", want.Key, err)
	} else {
		copy(wantKey[:], b)
	}
	var ins []string
	for _, s := range want.Sums {
		ins = append(ins, s.Input)
	}
	got := computeKeyedHashVectors(wantKey, ins)
	for i := range want.Sums {
		if got.Sums[i] != want.Sums[i] {
			t.Errorf("Sum(%s) = %s, golden %s", want.Sums[i].Input, got.Sums[i].Sum, want.Sums[i].Sum)
		}
	}
	for _, p := range derivePurposes {
		if got.Derive[p] != want.Derive[p] {
			t.Errorf("Derive(%q) = %s, golden %s", p, got.Derive[p], want.Derive[p])
		}
	}
	if got.DerivedSum != want.DerivedSum {
		t.Errorf("Derive(blob id).Sum = %s, golden %s", got.DerivedSum, want.DerivedSum)
	}
	if len(want.Sums) < 5 || len(want.Derive) != len(derivePurposes) {
		t.Errorf("golden file has %d sums and %d derived keys", len(want.Sums), len(want.Derive))
	}
}

type signatureVectors struct {
	Comment    string         `json:"comment"`
	Public     PublicKey      `json:"public"`
	Host       string         `json:"host"`
	Repository string         `json:"repository"`
	Writer     string         `json:"writer_recipient"`
	Signatures []sigVector    `json:"signatures"`
	Extra      map[string]any `json:"extra,omitempty"`
}

type sigVector struct {
	Message string `json:"message"`
	Sig     string `json:"sig"` // base64
}

// The host credential file format and Ed25519 signatures (deterministic)
// are frozen: a credential written by an earlier build parses, and signs
// exactly as it did.
func TestGoldenHostCredential(t *testing.T) {
	msgs := []string{"", "vaultbak manifest v1\n{}"}
	if *update {
		c, err := NewHostCredential("golden-host", "00112233445566778899aabbccddeeff", KindX25519)
		if err != nil {
			t.Fatal(err)
		}
		writeGolden(t, goldenHostCredential, append([]byte(testKeyWarning), c.Marshal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))...))
		v := signatureVectors{Comment: "Ed25519 signatures by the TEST KEY in " + filepath.Base(goldenHostCredential), Public: c.Signing.Public(), Host: c.Host, Repository: c.Repository, Writer: c.WriterRecipient}
		for _, m := range msgs {
			v.Signatures = append(v.Signatures, sigVector{m, base64.StdEncoding.EncodeToString(c.Signing.Sign([]byte(m)))})
		}
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		writeGolden(t, goldenSignatures, append(data, '\n'))
	}
	c, err := ParseHostCredential(readGolden(t, goldenHostCredential))
	if err != nil {
		t.Fatal(err)
	}
	var v signatureVectors
	if err := json.Unmarshal(readGolden(t, goldenSignatures), &v); err != nil {
		t.Fatal(err)
	}
	if c.Host != v.Host || c.Repository != v.Repository || c.WriterRecipient != v.Writer || c.Signing.Public() != v.Public {
		t.Fatalf("golden credential parsed as host %q repo %q writer %s public %s; want %q %q %s %s", c.Host, c.Repository, c.WriterRecipient, c.Signing.Public(), v.Host, v.Repository, v.Writer, v.Public)
	}
	if len(v.Signatures) != len(msgs) {
		t.Fatalf("%d golden signatures", len(v.Signatures))
	}
	for _, s := range v.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Signing.Sign([]byte(s.Message)); !bytes.Equal(got, sig) {
			t.Errorf("Sign(%q) differs from the golden signature", s.Message)
		}
		if err := v.Public.Verify([]byte(s.Message), sig); err != nil {
			t.Errorf("golden signature of %q: %v", s.Message, err)
		}
	}
}
