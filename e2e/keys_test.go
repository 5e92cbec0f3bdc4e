package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// writerIdentity extracts the age identity of a host credential file: what
// an attacker holding the backup host has.
func writerIdentity(t *testing.T, hostKey string) age.Identity {
	t.Helper()
	data, err := os.ReadFile(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "writer-identity:"); ok {
			ids, err := age.ParseIdentities(strings.NewReader(strings.TrimSpace(v)))
			if err != nil || len(ids) != 1 {
				t.Fatalf("host credential: writer identity: %v", err)
			}
			return ids[0]
		}
	}
	t.Fatalf("%s holds no writer-identity line", hostKey)
	return nil
}

func fileIdentity(t *testing.T, p string) age.Identity {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil || len(ids) != 1 {
		t.Fatalf("%s: %v", p, err)
	}
	return ids[0]
}

// ageOpen decrypts an age file with id.
func ageOpen(sealed []byte, id age.Identity) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(sealed), id)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// manifestBody returns the body field (a blob ID) of a stored manifest.
func manifestBody(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var sm struct {
		Manifest struct {
			Body string `json:"body"`
		} `json:"manifest"`
	}
	if err := json.Unmarshal(data, &sm); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if len(sm.Manifest.Body) == 0 {
		t.Fatalf("%s: no body", p)
	}
	return sm.Manifest.Body
}

// TestKeyRoles checks what each key can do. The host credential backs up
// but cannot list, restore or dump, nor decrypt data, trees or snapshot
// bodies; nothing stored in a region shows a file name, a path or file
// content; the recovery identity opens everything.
func TestKeyRoles(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "Confidential-Projects-Q7")
	secretFile := filepath.Join(src, "Payroll-Archive-X42", "Merger-Plan-Zebra-5521.txt")
	marker := "PLAINTEXT-MARKER-Quokka-9f31e"
	text := []byte(strings.Repeat(marker+" the numbers are final\n", 2000))
	writeFile(t, secretFile, text, 0o644)
	randomFile := filepath.Join(src, "Payroll-Archive-X42", "Salaries-Ocelot.bin")
	random := randomBytes(42, 256<<10)
	writeFile(t, randomFile, random, 0o600)
	smallFile := filepath.Join(src, "tiny-Pangolin.txt")
	writeFile(t, smallFile, []byte("short secret Narwhal-771\n"), 0o644)

	// Backup needs only the host credential.
	e.ok("backup", src)

	// Without the recovery identity, reading fails and says what is missing.
	for _, args := range [][]string{
		{"restore", "latest", "--target", filepath.Join(e.dir, "nope")},
		{"ls", "latest"},
		{"dump", "latest", secretFile},
		{"check", "--read-data"},
	} {
		r := e.run(args...)
		if r.code == exitOK {
			t.Errorf("%q with only the host credential succeeded\n%s", args, r)
			continue
		}
		if !strings.Contains(r.stderr, "recovery identity") {
			t.Errorf("%q with only the host credential: the error does not mention the recovery identity\n%s", args, r)
		}
		if strings.Contains(r.stdout, marker) {
			t.Errorf("%q with only the host credential printed file content", args)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dir, "nope", secretFile)); err == nil {
		t.Errorf("restore with only the host credential wrote %s", secretFile)
	}
	// The host credential file given as the recovery identity opens nothing.
	if r := e.run("--identity", e.hostKey, "dump", "latest", secretFile); r.code == exitOK || strings.Contains(r.stdout, marker) {
		t.Errorf("dump with the host credential as --identity succeeded\n%s", r)
	}
	// The metadata that is public by design is readable without keys.
	if r := e.ok("snapshots"); !strings.Contains(r.stdout, "e2e-host") {
		t.Errorf("snapshots does not show the host:\n%s", r)
	}

	// Nothing stored in any region shows names, paths or content.
	needles := map[string][]byte{
		"file name":         []byte("Merger-Plan-Zebra"),
		"directory name":    []byte("Payroll-Archive-X42"),
		"backup path":       []byte(src),
		"tree root name":    []byte("Confidential-Projects-Q7"),
		"small file name":   []byte("tiny-Pangolin"),
		"text content":      []byte(marker),
		"small content":     []byte("Narwhal-771"),
		"random content 1":  random[1000:1048],
		"random content 2":  random[200000:200048],
		"content sha256":    sha256sum(random),
		"content sha256 hx": []byte(hex.EncodeToString(sha256sum(random))),
		"text sha256 hex":   []byte(hex.EncodeToString(sha256sum(text))),
	}
	// Trees and bodies hold names as JSON bytes, that is base64.
	for _, name := range []string{"Merger-Plan-Zebra-5521.txt", "Payroll-Archive-X42", "Confidential-Projects-Q7", "tiny-Pangolin.txt", "Salaries-Ocelot.bin", src} {
		needles["base64 of "+name] = []byte(base64.StdEncoding.EncodeToString([]byte(name)))
	}
	var all []string
	for _, reg := range e.regions {
		all = append(all, objects(t, reg, "")...)
	}
	if len(all) == 0 {
		t.Fatal("no objects in the regions")
	}
	for _, p := range all {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for what, n := range needles {
			if bytes.Contains(data, n) {
				t.Errorf("%s appears in plaintext in %s", what, p)
			}
		}
	}

	// What the writer role can and cannot decrypt, checked with age itself.
	writer := writerIdentity(t, e.hostKey)
	recovery := fileIdentity(t, e.recovery)
	region := e.regions[0]
	packs := objects(t, region, "data")
	if len(packs) == 0 {
		t.Fatal("no packs")
	}
	var plainPacks [][]byte
	for _, p := range packs {
		sealed, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var nim *age.NoIdentityMatchError
		if _, err := ageOpen(sealed, writer); !errors.As(err, &nim) {
			t.Errorf("pack %s: the host credential's writer identity: %v, want no identity match", filepath.Base(p), err)
		}
		plain, err := ageOpen(sealed, recovery)
		if err != nil {
			t.Errorf("pack %s: the recovery identity cannot open it: %v", filepath.Base(p), err)
		}
		plainPacks = append(plainPacks, plain)
	}
	// A snapshot's body (its backup paths) is a blob in a pack, covered
	// above: the manifest itself only names it by keyed ID.
	for _, p := range objects(t, region, "snapshots") {
		if body := manifestBody(t, p); len(body) != 64 {
			t.Errorf("snapshot %s: body %q is not a blob ID", filepath.Base(p), body)
		}
	}
	// The writer reads the index (it deduplicates with it), which must not
	// reveal names either.
	for _, p := range objects(t, region, "index") {
		sealed, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := ageOpen(sealed, writer)
		if err != nil {
			t.Errorf("index %s: the writer identity cannot open it: %v", filepath.Base(p), err)
			continue
		}
		for what, n := range needles {
			if bytes.Contains(plain, n) {
				t.Errorf("%s appears in the index plaintext %s, which the host credential can read", what, filepath.Base(p))
			}
		}
	}
	// The search above would find unencrypted data: a decrypted pack holds
	// the random content (stored uncompressed) verbatim.
	found := false
	for _, plain := range plainPacks {
		if bytes.Contains(plain, needles["random content 2"]) {
			found = true
		}
	}
	if !found {
		t.Errorf("no decrypted pack holds the random file's content: the plaintext search proves nothing")
	}

	// With the recovery identity everything works.
	target := filepath.Join(e.dir, "restore")
	e.ok(e.withID("restore", "latest", "--target", target)...)
	if got, _ := os.ReadFile(restoredPath(target, secretFile)); !bytes.Equal(got, text) {
		t.Errorf("restored %s differs", secretFile)
	}
	ls := e.ok(e.withID("ls", "latest")...)
	requireContains(t, "ls with the recovery identity", ls.stdout, secretFile)
	dump := e.ok(e.withID("dump", "latest", randomFile)...)
	if !bytes.Equal([]byte(dump.stdout), random) {
		t.Errorf("dump of %s: %d bytes differing from the %d backed up", randomFile, len(dump.stdout), len(random))
	}
	// VAULTBAK_IDENTITY works like --identity.
	r := e.runWith(runOpts{env: []string{"VAULTBAK_IDENTITY=" + e.recovery}}, "dump", "latest", smallFile)
	if r.code != exitOK || r.stdout != "short secret Narwhal-771\n" {
		t.Errorf("dump with VAULTBAK_IDENTITY:\n%s", r)
	}
	e.ok(e.withID("check", "--read-data")...)
}

func sha256sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
