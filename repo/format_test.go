package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"vaultbak/crypt"
)

func testID(n byte) crypt.ID {
	return crypt.ID(sha256.Sum256([]byte{n}))
}

func samplePacks() []indexPack {
	return []indexPack{
		{Hash: testID(1), Size: 1234, Entries: []BlobEntry{
			{ID: testID(10), Type: DataBlob, Flags: flagZstd, Offset: 0, Length: 100, RawLen: 300},
			{ID: testID(11), Type: TreeBlob, Flags: 0, Offset: 100, Length: 50, RawLen: 50},
		}},
		{Hash: testID(2), Size: 1 << 40, Entries: nil},
		{Hash: testID(3), Size: 0, Entries: []BlobEntry{{ID: testID(12), Type: DataBlob, Offset: 1<<32 - 1, Length: 1<<32 - 1, RawLen: 1<<32 - 1}}},
	}
}

func TestIndexRoundTrip(t *testing.T) {
	for _, packs := range [][]indexPack{nil, samplePacks()} {
		enc := encodeIndex(packs)
		if !bytes.HasPrefix(enc, []byte("VBINDEX1")) {
			t.Fatalf("index starts %q", enc[:8])
		}
		got, err := decodeIndex(enc)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(packs) {
			t.Fatalf("%d packs, want %d", len(got), len(packs))
		}
		for i := range packs {
			if got[i].Hash != packs[i].Hash || got[i].Size != packs[i].Size || len(got[i].Entries) != len(packs[i].Entries) {
				t.Fatalf("pack %d: %+v, want %+v", i, got[i], packs[i])
			}
			for j := range packs[i].Entries {
				if got[i].Entries[j] != packs[i].Entries[j] {
					t.Fatalf("pack %d entry %d: %+v, want %+v", i, j, got[i].Entries[j], packs[i].Entries[j])
				}
			}
		}
		if !bytes.Equal(encodeIndex(got), enc) {
			t.Fatal("re-encoding differs")
		}
	}
}

// The index file layout is part of the format: this is its exact encoding.
func TestIndexEncodingIsFrozen(t *testing.T) {
	packs := []indexPack{{Hash: crypt.ID{1}, Size: 0x0102, Entries: []BlobEntry{{ID: crypt.ID{2}, Type: TreeBlob, Flags: flagZstd, Offset: 3, Length: 4, RawLen: 5}}}}
	want := "5642494e44455831" + "01000000" + // magic, 1 pack
		"01" + strings.Repeat("00", 31) + "0201000000000000" + "01000000" + // hash, size, 1 entry
		"02" + strings.Repeat("00", 31) + "02" + "01" + "03000000" + "04000000" + "05000000"
	if got := hex.EncodeToString(encodeIndex(packs)); got != want {
		t.Fatalf("encodeIndex =\n%s\nwant\n%s", got, want)
	}
}

func TestDecodeIndexRejects(t *testing.T) {
	good := encodeIndex(samplePacks())
	packCount := func(n uint32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[8:], n)
		return b
	}
	entryCount := func(n uint32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[8+4+40:], n)
		return b
	}
	negSize := bytes.Clone(good)
	binary.LittleEndian.PutUint64(negSize[8+4+32:], 1<<63)
	for name, b := range map[string][]byte{
		"empty":             nil,
		"short":             []byte("VBINDEX"),
		"bad magic":         append([]byte("VBINDEX2"), good[8:]...),
		"truncated":         good[:len(good)-1],
		"trailing byte":     append(bytes.Clone(good), 0),
		"huge pack count":   packCount(1<<32 - 1),
		"pack count +1":     packCount(4),
		"pack count -1":     packCount(2),
		"huge entry count":  entryCount(1<<32 - 1),
		"entry count +1":    entryCount(3),
		"negative size":     negSize,
		"magic only":        []byte("VBINDEX1"),
		"count without any": []byte("VBINDEX1\x01\x00\x00\x00"),
	} {
		if _, err := decodeIndex(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestPackTrailerRoundTrip(t *testing.T) {
	var p packBuilder
	blobs := [][]byte{[]byte("first"), {}, bytes.Repeat([]byte("x"), 1000), []byte("last")}
	for i, b := range blobs {
		p.add(testID(byte(i)), DataBlob, uint8(i%2), b, len(b)+i)
	}
	plain := p.finish()
	if !bytes.HasSuffix(plain, []byte("VBPACK01")) {
		t.Fatal("pack does not end with its magic")
	}
	size := int64(len(plain))
	for _, tail := range [][]byte{plain, plain[len(plain)-(len(blobs)*packEntrySize+12):]} {
		entries, err := parsePackTrailer(tail, size)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(blobs) {
			t.Fatalf("%d entries", len(entries))
		}
		for i, e := range entries {
			if e != p.entries[i] {
				t.Fatalf("entry %d = %+v, want %+v", i, e, p.entries[i])
			}
			if got := plain[e.Offset : e.Offset+e.Length]; !bytes.Equal(got, blobs[i]) {
				t.Fatalf("blob %d at its offset is %q", i, got)
			}
		}
	}

	var empty packBuilder
	plain = empty.finish()
	if entries, err := parsePackTrailer(plain, int64(len(plain))); err != nil || len(entries) != 0 {
		t.Fatalf("empty pack: %v, %v", entries, err)
	}
}

func TestPackTrailerRejects(t *testing.T) {
	var p packBuilder
	p.add(testID(1), DataBlob, 0, []byte("0123456789"), 10)
	p.add(testID(2), DataBlob, 0, []byte("abcdef"), 6)
	good := p.finish()
	size := int64(len(good))
	withLen := func(n uint32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[len(b)-12:], n)
		return b
	}
	outOfBounds := bytes.Clone(good)
	binary.LittleEndian.PutUint32(outOfBounds[16+packEntrySize+38:], 7) // second blob's length: 10+7 > 16
	overflow := bytes.Clone(good)
	binary.LittleEndian.PutUint32(overflow[16+34:], 1<<32-1) // offset near 4 GiB
	for name, tc := range map[string]struct {
		tail []byte
		size int64
	}{
		"empty":            {nil, 0},
		"bad magic":        {append(bytes.Clone(good[:len(good)-1]), '2'), size},
		"short":            {good[len(good)-11:], size},
		"length not entry": {withLen(packEntrySize + 1), size},
		"length too long":  {withLen(3 * packEntrySize), size},
		"huge length":      {withLen(1<<32 - 2), size},
		"tail too short":   {good[len(good)-20:], size},
		"blob out of pack": {outOfBounds, size},
		"offset overflow":  {overflow, size},
		"size too small":   {good, 20},
	} {
		if _, err := parsePackTrailer(tc.tail, tc.size); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestDecodeBlob(t *testing.T) {
	raw := bytes.Repeat([]byte("compressible "), 1000)
	enc, _ := zstd.NewWriter(nil)
	comp := enc.EncodeAll(raw, nil)
	if got, err := decodeBlob(comp, flagZstd, uint32(len(raw)), nil); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("zstd blob: %v", err)
	}
	buf := make([]byte, 0, len(raw))
	if got, err := decodeBlob(comp, flagZstd, uint32(len(raw)), buf); err != nil || &got[0] != &buf[:1][0] {
		t.Fatalf("a large enough buf is not used: %v", err)
	}
	if got, err := decodeBlob([]byte("plain"), 0, 5, nil); err != nil || string(got) != "plain" {
		t.Fatalf("plain blob: %q, %v", got, err)
	}
	for name, tc := range map[string]struct {
		stored []byte
		flags  uint8
		rawLen uint32
	}{
		"plain length":   {[]byte("plain"), 0, 6},
		"zstd length":    {comp, flagZstd, uint32(len(raw)) - 1},
		"zstd too long":  {comp, flagZstd, uint32(len(raw)) + 1},
		"not zstd":       {[]byte("not a zstd frame"), flagZstd, 16},
		"damaged frame":  {flipAt(comp, len(comp)/2), flagZstd, uint32(len(raw))},
		"huge raw len":   {comp, flagZstd, 1<<32 - 1},
		"truncated zstd": {comp[:len(comp)-3], flagZstd, uint32(len(raw))},
	} {
		if got, err := decodeBlob(tc.stored, tc.flags, tc.rawLen, nil); err == nil && !(name == "damaged frame" && !bytes.Equal(got, raw)) {
			t.Errorf("%s: decoded", name)
		}
	}
}

// zstdRLEFrame returns a zstd frame of n copies of b built from RLE blocks,
// without running an encoder over n bytes.
func zstdRLEFrame(n int, b byte) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0} // magic; single segment, 8-byte content size
	f = binary.LittleEndian.AppendUint64(f, uint64(n))
	const maxBlock = 128 << 10
	for n > 0 {
		m := min(n, maxBlock)
		n -= m
		h := uint32(m)<<3 | 1<<1 // RLE block
		if n == 0 {
			h |= 1 // last block
		}
		f = append(f, byte(h), byte(h>>8), byte(h>>16), b)
	}
	return f
}

// A tree blob may be up to maxTreeSize (a directory with a few hundred
// thousand entries); one that zstd shrank must decode back, or the writer
// refuses to store it ("does not survive compression") and the backup of
// that directory fails.
func TestDecodeBlobUpToMaxTreeSize(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 65 MiB")
	}
	n := 64<<20 + 1
	got, err := decodeBlob(zstdRLEFrame(n, '{'), flagZstd, uint32(n), nil)
	if err != nil {
		t.Fatalf("a %d-byte blob (below maxTreeSize %d) does not decode: %v", n, maxTreeSize, err)
	}
	if len(got) != n || got[n-1] != '{' {
		t.Fatal("decoded content differs")
	}
	if _, err := decodeBlob(zstdRLEFrame(1000, 'x'), flagZstd, maxTreeSize+1, nil); err == nil {
		t.Fatal("a raw length above maxTreeSize was accepted")
	}
}

func TestTreeEncoding(t *testing.T) {
	sub := testID(7)
	h := testID(8)
	tree := &Tree{Nodes: []Node{
		{Name: []byte("zeta"), Type: NodeFile, Mode: 0o644, Size: 3, Content: []crypt.ID{testID(1), testID(2)}, Hash: &h},
		{Name: []byte{0xff, 0xfe, 'x'}, Type: NodeFile}, // not UTF-8
		{Name: []byte("alpha"), Type: NodeDir, Mode: 0o755, Subtree: &sub},
		{Name: []byte("link"), Type: NodeSymlink, LinkTarget: []byte{'/', 0xff, '/', '.', '.'}},
		{Name: []byte("dev"), Type: NodeChar, Rdev: 0x0501},
		{Name: []byte("fifo"), Type: NodeFIFO},
		{Name: []byte("sock"), Type: NodeSocket},
		{Name: []byte("blk"), Type: NodeBlock},
		{Name: []byte(".hidden"), Type: NodeFile, Links: 2, Inode: 9, DevID: 1},
	}}
	data, err := EncodeTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(tree.Nodes); i++ {
		if bytes.Compare(tree.Nodes[i-1].Name, tree.Nodes[i].Name) >= 0 {
			t.Fatal("EncodeTree did not sort the nodes")
		}
	}
	got, err := DecodeTree(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Nodes) != len(tree.Nodes) {
		t.Fatalf("%d nodes", len(got.Nodes))
	}
	for i := range got.Nodes {
		a, b := got.Nodes[i], tree.Nodes[i]
		if !bytes.Equal(a.Name, b.Name) || a.Type != b.Type || !bytes.Equal(a.LinkTarget, b.LinkTarget) || len(a.Content) != len(b.Content) {
			t.Fatalf("node %d: %+v, want %+v", i, a, b)
		}
	}
	// Canonical: the same directory in another order encodes to equal bytes.
	shuffled := &Tree{Nodes: append([]Node(nil), tree.Nodes...)}
	for i, j := 0, len(shuffled.Nodes)-1; i < j; i, j = i+1, j-1 {
		shuffled.Nodes[i], shuffled.Nodes[j] = shuffled.Nodes[j], shuffled.Nodes[i]
	}
	again, err := EncodeTree(shuffled)
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("a shuffled tree encodes differently: %v", err)
	}
	dup := &Tree{Nodes: []Node{{Name: []byte("a"), Type: NodeFile}, {Name: []byte("a"), Type: NodeDir, Subtree: &sub}}}
	if _, err := EncodeTree(dup); err == nil {
		t.Error("EncodeTree accepted two entries with one name")
	}
	if data, err := EncodeTree(&Tree{}); err != nil {
		t.Fatal(err)
	} else if tr, err := DecodeTree(data); err != nil || len(tr.Nodes) != 0 {
		t.Fatalf("empty tree: %v", err)
	}
}

func TestDecodeTreeRejectsUnsafeEntries(t *testing.T) {
	sub := testID(1)
	for name, n := range map[string]Node{
		"empty name":        {Name: []byte{}, Type: NodeFile},
		"nil name":          {Type: NodeFile},
		"dot":               {Name: []byte("."), Type: NodeFile},
		"dot dot":           {Name: []byte(".."), Type: NodeDir, Subtree: &sub},
		"slash":             {Name: []byte("a/b"), Type: NodeFile},
		"absolute":          {Name: []byte("/etc"), Type: NodeDir, Subtree: &sub},
		"trailing slash":    {Name: []byte("a/"), Type: NodeFile},
		"nul":               {Name: []byte("a\x00b"), Type: NodeFile},
		"unknown type":      {Name: []byte("a"), Type: "hardlink"},
		"no type":           {Name: []byte("a")},
		"dir, no subtree":   {Name: []byte("a"), Type: NodeDir},
		"dot dot as a file": {Name: []byte(".."), Type: NodeFile},
	} {
		data, err := json.Marshal(&Tree{Nodes: []Node{{Name: []byte("ok"), Type: NodeFile}, n}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeTree(data); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	for _, s := range []string{"", "null", "[]", `{"nodes":[{"name":"not base64!"}]}`, `{"nodes":7}`, "{"} {
		if tr, err := DecodeTree([]byte(s)); err == nil && (s != "null" || tr == nil) {
			if s == "null" {
				continue
			}
			t.Errorf("DecodeTree(%q) decoded", s)
		}
	}
}

func TestHashFromNameAndPackName(t *testing.T) {
	id := testID(42)
	name := PackName(id)
	if want := "data/" + id.String()[:2] + "/" + id.String(); name != want {
		t.Fatalf("PackName = %s, want %s", name, want)
	}
	for _, n := range []string{name, indexName(id)} {
		if got, ok := hashFromName(n); !ok || got != id {
			t.Errorf("hashFromName(%s) = %v, %v", n, got, ok)
		}
	}
	for _, n := range []string{"", "data/ab", "index/" + strings.Repeat("g", 64), "config"} {
		if _, ok := hashFromName(n); ok {
			t.Errorf("hashFromName(%q) ok", n)
		}
	}
	if DataBlob.String() != "data" || TreeBlob.String() != "tree" || BlobType(9).String() != "blob type 9" {
		t.Error("BlobType.String")
	}
	if ShortID("0123456789abcdef") != "0123456789ab" || ShortID("abc") != "abc" {
		t.Error("ShortID")
	}
}

// Small blobs compress into frames that do not declare their size; they must
// still round trip through the writer and reader.
func TestSmallCompressibleBlobs(t *testing.T) {
	e := newEnv(t, 1, crypt.KindX25519)
	w := newWriter(t, e.repo)
	var blobs [][]byte
	for n := 60; n <= 300; n += 7 {
		blobs = append(blobs, bytes.Repeat([]byte{'a', 'b'}, n/2))
	}
	ids := saveAll(t, w, blobs)
	commitTree(t, e.repo, w, "small", ids, testTime)
	r := e.open(e.keysRecovery())
	for i, id := range ids {
		got, err := r.LoadBlob(context.Background(), id, nil)
		if err != nil || !bytes.Equal(got, blobs[i]) {
			t.Fatalf("blob of %d bytes: %v", len(blobs[i]), err)
		}
	}
}
