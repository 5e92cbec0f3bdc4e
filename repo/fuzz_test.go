package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vaultbak/crypt"
)

// Fuzz targets for every decoder of untrusted repository bytes. Each must
// not panic, must not allocate beyond a small multiple of its input, and
// must only return what it validated.

func FuzzDecodeIndex(f *testing.F) {
	f.Add(encodeIndex(nil))
	f.Add(encodeIndex(samplePacks()))
	f.Add([]byte("VBINDEX1\xff\xff\xff\xff"))
	f.Add([]byte("VBINDEX1\x01\x00\x00\x00" + string(make([]byte, 40)) + "\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		packs, err := decodeIndex(data)
		if err != nil {
			return
		}
		// Canonical: what decodes re-encodes to the same bytes.
		if !bytes.Equal(encodeIndex(packs), data) {
			t.Fatal("decoded index re-encodes differently")
		}
		for _, p := range packs {
			if p.Size < 0 {
				t.Fatalf("negative pack size %d", p.Size)
			}
		}
	})
}

func FuzzParsePackTrailer(f *testing.F) {
	var p packBuilder
	p.add(testID(1), DataBlob, flagZstd, []byte("some stored bytes"), 40)
	p.add(testID(2), TreeBlob, 0, []byte("{}"), 2)
	f.Add(p.finish(), int64(0))
	var empty packBuilder
	f.Add(empty.finish(), int64(0))
	f.Add([]byte("\xff\xff\xff\xffVBPACK01"), int64(0))
	f.Fuzz(func(t *testing.T, tail []byte, extra int64) {
		// tail is the end of a plaintext of size >= len(tail).
		if extra < 0 || extra > 1<<40 {
			extra = 0
		}
		size := int64(len(tail)) + extra
		entries, err := parsePackTrailer(tail, size)
		if err != nil {
			return
		}
		n := int64(len(entries))*packEntrySize + 12
		if n > int64(len(tail)) {
			t.Fatalf("%d entries from a %d-byte tail", len(entries), len(tail))
		}
		for _, e := range entries {
			if int64(e.Offset)+int64(e.Length) > size-n {
				t.Fatalf("entry %+v beyond the data of a %d-byte pack", e, size)
			}
		}
	})
}

func FuzzDecodeTree(f *testing.F) {
	sub := testID(3)
	for _, tr := range []*Tree{{}, {Nodes: []Node{
		{Name: []byte("a"), Type: NodeFile, Content: []crypt.ID{testID(1)}},
		{Name: []byte{0xff}, Type: NodeDir, Subtree: &sub},
		{Name: []byte("l"), Type: NodeSymlink, LinkTarget: []byte("../x")},
	}}} {
		data, err := EncodeTree(tr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"nodes":[{"name":"Li4=","type":"file"}]}`)) // ".."
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := DecodeTree(data)
		if err != nil {
			return
		}
		for _, n := range tr.Nodes {
			if len(n.Name) == 0 || bytes.Equal(n.Name, []byte(".")) || bytes.Equal(n.Name, []byte("..")) || bytes.ContainsAny(n.Name, "/\x00") {
				t.Fatalf("unsafe name %q accepted", n.Name)
			}
			if n.Type == NodeDir && n.Subtree == nil {
				t.Fatal("directory without subtree accepted")
			}
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	key := crypt.GenerateSigningKey()
	m := &Manifest{Version: FormatVersion, Repository: "r", Host: "h", Time: time.Unix(1, 0).UTC(), Seq: 1, Tree: testID(1), Tags: []string{"t"}, Body: testID(2)}
	_, data, err := signManifest(m, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	if matches, _ := filepath.Glob("testdata/golden-repo/snapshots/*"); len(matches) > 0 {
		if d, err := os.ReadFile(matches[0]); err == nil {
			f.Add(d)
		}
	}
	f.Add([]byte(`{"format":"vaultbak-manifest","manifest":{},"signer":"ed25519:","sig":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Under its true name (the hash of the embedded manifest) and
		// under a fixed wrong one.
		id := "0000"
		var sm signedManifest
		if json.Unmarshal(data, &sm) == nil {
			sum := sha256.Sum256(sm.Manifest)
			id = hex.EncodeToString(sum[:])
		}
		for _, name := range []string{id, "x"} {
			s, err := decodeManifest(name, data)
			if err != nil {
				continue
			}
			if s.ID != name || s.Version != FormatVersion {
				t.Fatalf("decoded manifest: ID %q version %d", s.ID, s.Version)
			}
			if err := s.Signer.Verify(manifestSignedBytes(sm.Manifest), sm.Sig); err != nil {
				t.Fatalf("accepted a manifest whose signature does not verify: %v", err)
			}
		}
	})
}

func FuzzDecodeConfig(f *testing.F) {
	s := newSecrets(crypt.NewKey())
	c := &Config{Version: FormatVersion, ID: "abc", Chunker: testChunker, PackSize: testPackSize, Compression: "zstd", KeyKind: crypt.KindX25519, Recovery: []string{"age1x"},
		Hosts: []HostEntry{{Name: "h", WriterRecipient: "age1y", SigningKey: "ed25519:AAAA", Enrolled: time.Unix(0, 0).UTC()}}}
	data, err := encodeConfig(c, s)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	if d, err := os.ReadFile("testdata/golden-repo/config"); err == nil {
		f.Add(d)
	}
	f.Add([]byte(`{"format":"vaultbak-config","config":{"version":1},"mac":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, file, err := decodeConfig(data)
		if err != nil {
			return
		}
		if c.Version != FormatVersion || c.Chunker.Validate() != nil || c.PackSize < 1<<20 || c.PackSize > 1<<30 {
			t.Fatalf("accepted config %+v", c)
		}
		if file.Format != configFormat {
			t.Fatalf("accepted format %q", file.Format)
		}
		// A MAC that verifies under fresh random secrets is a forgery.
		if verifyConfig(file, newSecrets(crypt.NewKey())) {
			t.Fatal("config MAC verifies under random secrets")
		}
	})
}

// FuzzDecodeBlob: stored blob bytes from an index entry an attacker may
// control (flags and raw length included).
func FuzzDecodeBlob(f *testing.F) {
	f.Add([]byte("plain"), uint8(0), uint32(5))
	f.Add(zstdRLEFrame(1000, 'a'), flagZstd, uint32(1000))
	f.Add(zstdRLEFrame(1<<20, 'a'), flagZstd, uint32(10))
	f.Fuzz(func(t *testing.T, stored []byte, flags uint8, rawLen uint32) {
		// Bound what a single decode may allocate in the fuzzer: the cap on
		// rawLen (maxTreeSize) is checked by TestDecodeBlob.
		if flags&flagZstd != 0 && rawLen > 4<<20 {
			rawLen %= 4 << 20
		}
		out, err := decodeBlob(stored, flags, rawLen, nil)
		if err == nil && uint32(len(out)) != rawLen {
			t.Fatalf("decoded %d bytes, raw length says %d", len(out), rawLen)
		}
	})
}

func FuzzDecodeAudit(f *testing.F) {
	key := crypt.GenerateSigningKey()
	rec := &AuditRecord{Version: FormatVersion, Repository: "r", Signer: HostSigner("h"), Seq: 1, Time: time.Unix(1, 0).UTC(), Op: "backup", Result: "ok", Regions: []string{"r1"}}
	_, data, err := signAudit(rec, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"format":"vaultbak-audit","record":{},"signer":"ed25519:","sig":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Under the name its content claims, and under a fixed wrong one.
		name := auditName("x", 1, "0000000000000000000000000000000000000000000000000000000000000000")
		var sa signedAudit
		var r AuditRecord
		if json.Unmarshal(data, &sa) == nil && json.Unmarshal(sa.Record, &r) == nil {
			sum := sha256.Sum256(sa.Record)
			name = auditName(r.Signer, r.Seq, hex.EncodeToString(sum[:]))
		}
		for _, n := range []string{name, "audit/x"} {
			e, err := decodeAudit(n, data)
			if err != nil {
				continue
			}
			if e.Name != n || e.Version != FormatVersion || e.Seq == 0 || AuditChain(e.Signer) != n[len("audit/"):len("audit/")+16] {
				t.Fatalf("decoded record does not match its name %q: %+v", n, e)
			}
			if err := e.Key.Verify(auditSignedBytes(sa.Record), sa.Sig); err != nil {
				t.Fatalf("accepted a record whose signature does not verify: %v", err)
			}
		}
	})
}
