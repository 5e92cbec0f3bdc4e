package chunk

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
)

var update = flag.Bool("update", false, "rewrite testdata/golden-boundaries.json")

const (
	KiB = 1 << 10
	MiB = 1 << 20
)

// smallParams keep in-memory tests fast and produce many chunks per MiB.
var smallParams = Params{Algorithm: AlgorithmFastCDC, Min: 2 * KiB, Avg: 8 * KiB, Max: 32 * KiB}

// testKey derives a 32-byte key from a name.
func testKey(name string) []byte {
	k := sha256.Sum256([]byte("vaultbak chunk test key: " + name))
	return k[:]
}

// stream returns n bytes of ChaCha8 output seeded from seed.
func stream(seed [32]byte, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(seed), n)
}

func seedOf(name string) [32]byte { return sha256.Sum256([]byte("vaultbak chunk test seed: " + name)) }

func randomBytes(name string, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8(seedOf(name)).Read(b)
	return b
}

// span is one chunk: where it starts in the stream, its length and its digest.
type span struct {
	Off int64
	Len int
	Sum [32]byte
}

// chunkAll chunks r to the end and checks the invariants every stream must
// keep: no empty chunk, no chunk above Max, none below Min but the last, and
// (nil, io.EOF) at the end, repeated on further calls. It returns the chunks
// and the error that ended the stream (nil for a clean io.EOF).
func chunkAll(tb testing.TB, c *Chunker, p Params, r io.Reader) ([]span, error) {
	tb.Helper()
	c.Reset(r)
	var spans []span
	var off int64
	for {
		b, err := c.Next()
		if err == io.EOF {
			if b != nil {
				tb.Fatalf("Next returned %d bytes with io.EOF", len(b))
			}
			break
		}
		if err != nil {
			if b != nil {
				tb.Fatalf("Next returned %d bytes with error %v", len(b), err)
			}
			return spans, err
		}
		if len(b) == 0 {
			tb.Fatalf("Next returned an empty chunk at offset %d", off)
		}
		if len(b) > p.Max {
			tb.Fatalf("chunk at offset %d is %d bytes, above Max %d", off, len(b), p.Max)
		}
		if n := len(spans); n > 0 && spans[n-1].Len < p.Min {
			tb.Fatalf("chunk at offset %d is %d bytes, below Min %d, and not last", spans[n-1].Off, spans[n-1].Len, p.Min)
		}
		spans = append(spans, span{Off: off, Len: len(b), Sum: sha256.Sum256(b)})
		off += int64(len(b))
	}
	for range 2 {
		if b, err := c.Next(); b != nil || err != io.EOF {
			tb.Fatalf("Next after end = (%d bytes, %v), want (nil, io.EOF)", len(b), err)
		}
	}
	return spans, nil
}

func newChunker(tb testing.TB, p Params, key []byte) *Chunker {
	tb.Helper()
	c, err := New(p, key, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// checkCovers fails unless spans tile data exactly.
func checkCovers(t *testing.T, spans []span, data []byte) {
	t.Helper()
	var off int64
	for i, s := range spans {
		if s.Off != off {
			t.Fatalf("chunk %d starts at %d, want %d", i, s.Off, off)
		}
		if s.Sum != sha256.Sum256(data[off:off+int64(s.Len)]) {
			t.Fatalf("chunk %d (offset %d, %d bytes) differs from input", i, s.Off, s.Len)
		}
		off += int64(s.Len)
	}
	if off != int64(len(data)) {
		t.Fatalf("chunks cover %d bytes, input has %d", off, len(data))
	}
}

func boundaries(spans []span) []int64 {
	b := make([]int64, len(spans))
	for i, s := range spans {
		b[i] = s.Off + int64(s.Len)
	}
	return b
}

func TestValidate(t *testing.T) {
	ok := DefaultParams()
	with := func(f func(*Params)) Params { p := ok; f(&p); return p }
	tests := []struct {
		name string
		p    Params
		err  string // "" for valid
	}{
		{"default", ok, ""},
		{"small", smallParams, ""},
		{"smallest", Params{AlgorithmFastCDC, 64, 128, 129}, ""},
		{"largest", Params{AlgorithmFastCDC, 64, 32 * MiB, 64 * MiB}, ""},
		{"algorithm empty", with(func(p *Params) { p.Algorithm = "" }), `chunk: unknown algorithm ""`},
		{"algorithm legacy", with(func(p *Params) { p.Algorithm = "fastcdc" }), `chunk: unknown algorithm "fastcdc"`},
		{"avg not power of two", with(func(p *Params) { p.Avg = 1000 }), "chunk: average size 1000 is not a power of two"},
		{"avg zero", with(func(p *Params) { p.Avg = 0 }), "chunk: average size 0 is not a power of two"},
		{"avg negative", with(func(p *Params) { p.Avg = -4 }), "chunk: average size -4 is not a power of two"},
		{"min too small", with(func(p *Params) { p.Min = 63 }), "chunk: minimum size 63 is below 64"},
		{"max too large", with(func(p *Params) { p.Max = 64*MiB + 1 }), "chunk: maximum size 67108865 is above 67108864"},
		{"min equals avg", with(func(p *Params) { p.Min = p.Avg }), "chunk: minimum size 524288 is not below average size 524288"},
		{"max equals avg", with(func(p *Params) { p.Max = p.Avg }), "chunk: average size 524288 is not below maximum size 524288"},
		{"min above max", Params{AlgorithmFastCDC, 8 * KiB, 4 * KiB, 2 * KiB}, "chunk: minimum size 8192 is not below average size 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", tt.p, err)
				}
				if _, err := New(tt.p, testKey("v"), nil); err != nil {
					t.Fatalf("New(%+v) = %v, want nil", tt.p, err)
				}
				return
			}
			if err == nil || err.Error() != tt.err {
				t.Fatalf("Validate(%+v) = %v, want %q", tt.p, err, tt.err)
			}
			if _, err := New(tt.p, testKey("v"), nil); err == nil || err.Error() != tt.err {
				t.Fatalf("New(%+v) = %v, want %q", tt.p, err, tt.err)
			}
		})
	}
}

func TestDefaultParams(t *testing.T) {
	p := DefaultParams()
	want := Params{Algorithm: "fastcdc-v1.0.0", Min: 64 * KiB, Avg: 512 * KiB, Max: 2 * MiB}
	if p != want {
		t.Fatalf("DefaultParams() = %+v, want %+v", p, want)
	}
	// The JSON names are part of the repository config.
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"algorithm":"fastcdc-v1.0.0","min":65536,"avg":524288,"max":2097152}`; got != want {
		t.Fatalf("json = %s, want %s", got, want)
	}
}

func TestNewErrors(t *testing.T) {
	p := smallParams
	tests := []struct {
		name string
		key  []byte
		buf  []byte
		err  string
	}{
		{"nil key", nil, nil, "chunk: key is 0 bytes, want 32"},
		{"short key", make([]byte, 16), nil, "chunk: key is 16 bytes, want 32"},
		{"long key", make([]byte, 33), nil, "chunk: key is 33 bytes, want 32"},
		{"small buffer", testKey("k"), make([]byte, p.Max-1), "chunk: buffer of 32767 bytes is smaller than maximum chunk size 32768"},
		{"empty buffer", testKey("k"), []byte{}, "chunk: buffer of 0 bytes is smaller than maximum chunk size 32768"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(p, tt.key, tt.buf)
			if err == nil || err.Error() != tt.err {
				t.Fatalf("New = (%v, %v), want error %q", c, err, tt.err)
			}
		})
	}
}

func TestNextBeforeReset(t *testing.T) {
	c := newChunker(t, smallParams, testKey("k"))
	for range 2 {
		if b, err := c.Next(); b != nil || err != io.EOF {
			t.Fatalf("Next = (%d bytes, %v), want (nil, io.EOF)", len(b), err)
		}
	}
}

// readers deliver the same bytes in different strides; boundaries must not
// depend on them.
var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"data with EOF", iotest.DataErrReader},
	{"random strides", func(r io.Reader) io.Reader { return &strideReader{r: r, rng: rand.New(rand.NewPCG(1, 2))} }},
}

// strideReader returns reads of random length, sometimes (0, nil).
type strideReader struct {
	r   io.Reader
	rng *rand.Rand
}

func (s *strideReader) Read(p []byte) (int, error) {
	n := s.rng.IntN(3 * smallParams.Max)
	if n == 0 || len(p) == 0 {
		return 0, nil
	}
	return s.r.Read(p[:min(n, len(p))])
}

func TestEdgeLengths(t *testing.T) {
	params := []struct {
		name string
		p    Params
	}{
		{"small", smallParams},
		{"default", DefaultParams()},
	}
	for _, pp := range params {
		p := pp.p
		data := randomBytes("edge", 3*p.Max+17)
		lengths := []int{0, 1, p.Min - 1, p.Min, p.Min + 1, p.Avg, p.Max - 1, p.Max, p.Max + 1, 2 * p.Max, 3*p.Max + 17}
		bufs := []struct {
			name string
			buf  func() []byte
		}{
			{"buf=nil", func() []byte { return nil }},
			{"buf=max", func() []byte { return make([]byte, p.Max) }},
		}
		for _, n := range lengths {
			in := data[:n]
			var ref []int64
			for _, bb := range bufs {
				for _, rr := range readers {
					if testing.Short() && rr.name == "one byte" && pp.name == "default" {
						continue
					}
					t.Run(fmt.Sprintf("%s/len=%d/%s/%s", pp.name, n, bb.name, rr.name), func(t *testing.T) {
						c, err := New(p, testKey("edge"), bb.buf())
						if err != nil {
							t.Fatal(err)
						}
						spans, err := chunkAll(t, c, p, rr.wrap(bytes.NewReader(in)))
						if err != nil {
							t.Fatal(err)
						}
						checkCovers(t, spans, in)
						switch {
						case n == 0 && len(spans) != 0:
							t.Fatalf("empty stream gave %d chunks", len(spans))
						case n > 0 && n <= p.Min && len(spans) != 1:
							t.Fatalf("%d bytes gave %d chunks, want 1", n, len(spans))
						}
						b := boundaries(spans)
						if ref == nil {
							ref = b
						} else if !equalInt64(b, ref) {
							t.Fatalf("boundaries %v, want %v as with whole reads", b, ref)
						}
					})
				}
			}
		}
	}
}

func equalInt64(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// errAfter returns the bytes of data up to n, then err.
type errAfter struct {
	data []byte
	n    int
	err  error
}

func (e *errAfter) Read(p []byte) (int, error) {
	if e.n == 0 {
		return 0, e.err
	}
	k := copy(p, e.data[:min(e.n, len(e.data))])
	e.data, e.n = e.data[k:], e.n-k
	return k, nil
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReadErrors(t *testing.T) {
	p := smallParams
	data := randomBytes("errors", 10*p.Max)
	errBoom := errors.New("boom")
	wrappedEOF := fmt.Errorf("decompress: %w", io.EOF)
	tests := []struct {
		name   string
		r      io.Reader
		is     error  // errors.Is(err, is) must hold
		isNot  error  // and errors.Is(err, isNot) must not, if non-nil
		substr string // in the message
	}{
		{"at once", iotest.ErrReader(errBoom), errBoom, io.EOF, "chunk: reading input: boom"},
		{"after a few bytes", &errAfter{data: data, n: 100, err: errBoom}, errBoom, io.EOF, "chunk: reading input: boom"},
		{"after several chunks", &errAfter{data: data, n: 5*p.Max + 3, err: errBoom}, errBoom, io.EOF, "chunk: reading input: boom"},
		{"timeout", iotest.TimeoutReader(bytes.NewReader(data)), iotest.ErrTimeout, io.EOF, "chunk: reading input: timeout"},
		{"no progress", zeroReader{}, io.ErrNoProgress, io.EOF, "chunk: reading input: multiple Read calls return no data or error"},
		{"wrapped EOF", &errAfter{data: data, n: 3*p.Max + 1, err: wrappedEOF}, io.ErrUnexpectedEOF, io.EOF, "chunk: reading input: unexpected EOF: decompress: EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newChunker(t, p, testKey("errors"))
			spans, err := chunkAll(t, c, p, tt.r)
			if err == nil {
				t.Fatalf("no error after %d chunks", len(spans))
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q does not match %v", err, tt.is)
			}
			if tt.isNot != nil && errors.Is(err, tt.isNot) {
				t.Errorf("error %q matches %v", err, tt.isNot)
			}
			if !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("error %q does not contain %q", err, tt.substr)
			}
			// Chunks returned before the error are a prefix of the input.
			var off int64
			for _, s := range spans {
				if s.Sum != sha256.Sum256(data[off:off+int64(s.Len)]) {
					t.Fatalf("chunk at %d differs from input", off)
				}
				off += int64(s.Len)
			}
			t.Logf("%d chunks (%d bytes) before %v", len(spans), off, err)
			// The error is sticky until Reset.
			if b, err2 := c.Next(); b != nil || err2 != err {
				t.Fatalf("Next after error = (%d bytes, %v), want (nil, %v)", len(b), err2, err)
			}
			in := data[:p.Max+5]
			spans, err = chunkAll(t, c, p, bytes.NewReader(in))
			if err != nil {
				t.Fatalf("after Reset: %v", err)
			}
			checkCovers(t, spans, in)
		})
	}
}

// TestResetMidStream checks that a chunker reused on a new stream, while the
// previous one was half read, cuts exactly as a fresh one.
func TestResetMidStream(t *testing.T) {
	p := smallParams
	a, b := randomBytes("a", 20*p.Max), randomBytes("b", 20*p.Max)
	fresh := newChunker(t, p, testKey("reset"))
	want, err := chunkAll(t, fresh, p, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(p, testKey("reset"), make([]byte, p.Max))
	if err != nil {
		t.Fatal(err)
	}
	c.Reset(bytes.NewReader(a))
	for range 7 {
		if _, err := c.Next(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := chunkAll(t, c, p, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !equalInt64(boundaries(got), boundaries(want)) {
		t.Fatal("boundaries after Reset differ from a fresh chunker")
	}
	checkCovers(t, got, b)
}

// TestKeyCopied checks that the chunker does not depend on the caller's key
// slice after New.
func TestKeyCopied(t *testing.T) {
	p := smallParams
	data := randomBytes("keycopy", MiB)
	key := testKey("keycopy")
	want, _ := chunkAll(t, newChunker(t, p, key), p, bytes.NewReader(data))
	c := newChunker(t, p, key)
	clear(key)
	got, _ := chunkAll(t, c, p, bytes.NewReader(data))
	if !equalInt64(boundaries(got), boundaries(want)) {
		t.Fatal("boundaries changed after the key slice was cleared")
	}
}

func TestKeyed(t *testing.T) {
	size := int64(64 * MiB)
	if testing.Short() {
		size = 8 * MiB
	}
	p := DefaultParams()
	seed := seedOf("keyed")
	run := func(c *Chunker) []int64 {
		spans, err := chunkAll(t, c, p, stream(seed, size))
		if err != nil {
			t.Fatal(err)
		}
		return boundaries(spans)
	}
	c1 := newChunker(t, p, testKey("one"))
	a := run(c1)
	again := run(newChunker(t, p, testKey("one")))
	reused := run(c1)
	b := run(newChunker(t, p, testKey("two")))
	if !equalInt64(a, again) || !equalInt64(a, reused) {
		t.Fatal("same key gave different boundaries")
	}
	if equalInt64(a, b) {
		t.Fatal("different keys gave the same boundaries")
	}
	cuts := make(map[int64]bool, len(a))
	for _, x := range a[:len(a)-1] { // the end of the stream is always a cut
		cuts[x] = true
	}
	common := 0
	for _, x := range b[:len(b)-1] {
		if cuts[x] {
			common++
		}
	}
	t.Logf("%d MiB: key one %d chunks, key two %d chunks, %d cut points in common", size/MiB, len(a), len(b), common)
	if common > len(a)/10 {
		t.Fatalf("%d of %d cut points shared between two keys", common, len(a))
	}
}

func TestAverage(t *testing.T) {
	if testing.Short() {
		t.Skip("256 MiB per case")
	}
	const size = 256 * MiB
	for _, avg := range []int{256 * KiB, 1 * MiB, 4 * MiB} {
		p := Params{Algorithm: AlgorithmFastCDC, Min: avg / 4, Avg: avg, Max: avg * 4}
		if avg == MiB {
			p = DefaultParams()
		}
		t.Run(fmt.Sprintf("avg=%dKiB", avg/KiB), func(t *testing.T) {
			t.Parallel()
			c := newChunker(t, p, testKey("average"))
			c.Reset(stream(seedOf("average"), size))
			var n, atMax int
			var sum, sumSq float64
			for {
				b, err := c.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				n++
				l := float64(len(b))
				sum += l
				sumSq += l * l
				if len(b) == p.Max {
					atMax++
				}
			}
			mean := sum / float64(n)
			sd := math.Sqrt(sumSq/float64(n) - mean*mean)
			ratio := mean / float64(p.Avg)
			t.Logf("params %+v: %d chunks, mean %.0f KiB (%.2fx Avg), sd %.0f KiB, %d cut at Max", p, n, mean/KiB, ratio, sd/KiB, atMax)
			if ratio < 0.6 || ratio > 1.6 {
				t.Fatalf("mean chunk %.0f bytes is %.2fx Avg %d, want 0.6x-1.6x", mean, ratio, p.Avg)
			}
		})
	}
}

// TestShift checks that inserting bytes in the middle of a stream changes
// only the chunks around the insertion.
func TestShift(t *testing.T) {
	half := int64(32 * MiB)
	if testing.Short() {
		half = 8 * MiB
	}
	p := DefaultParams()
	c := newChunker(t, p, testKey("shift"))
	seed := seedOf("shift")
	orig, err := chunkAll(t, c, p, stream(seed, 2*half))
	if err != nil {
		t.Fatal(err)
	}
	// Same generator for both halves: the second half continues the stream.
	g := rand.NewChaCha8(seed)
	insert := randomBytes("insert", 100)
	edited, err := chunkAll(t, c, p, io.MultiReader(io.LimitReader(g, half), bytes.NewReader(insert), io.LimitReader(g, half)))
	if err != nil {
		t.Fatal(err)
	}
	known := make(map[[32]byte]bool, len(orig))
	for _, s := range orig {
		known[s.Sum] = true
	}
	changed := 0
	for _, s := range edited {
		if !known[s.Sum] {
			changed++
		}
	}
	t.Logf("%d MiB stream, 100 bytes inserted at %d: %d of %d chunks new", 2*half/MiB, half, changed, len(edited))
	if changed == 0 || changed > 3 {
		t.Fatalf("%d chunks changed, want 1 to 3", changed)
	}
}

// Golden boundaries freeze the repository format: the same params, key and
// stream must always give the same chunks.

const goldenPath = "testdata/golden-boundaries.json"

type goldenFile struct {
	Comment string       `json:"comment"`
	Cases   []goldenCase `json:"cases"`
}

type goldenCase struct {
	Name   string        `json:"name"`
	Params Params        `json:"params"`
	Seed   string        `json:"chacha8_seed"` // hex, math/rand/v2 ChaCha8
	Key    string        `json:"key"`          // hex
	Length int64         `json:"length"`
	Chunks []goldenChunk `json:"chunks"`
}

type goldenChunk struct {
	Offset int64  `json:"offset"`
	Length int    `json:"length"`
	SHA256 string `json:"sha256"`
}

var (
	goldenSeed = [32]byte([]byte("vaultbak golden chunk stream 001"))
	goldenKey  = []byte("vaultbak golden chunking key 001")
)

func goldenCases() []goldenCase {
	return []goldenCase{
		{Name: "default-48MiB", Params: DefaultParams(), Length: 48 * MiB},
		{Name: "small-1MiB", Params: smallParams, Length: 1 * MiB},
	}
}

func computeGolden(t *testing.T, gc goldenCase) goldenCase {
	gc.Seed = hex.EncodeToString(goldenSeed[:])
	gc.Key = hex.EncodeToString(goldenKey)
	c := newChunker(t, gc.Params, goldenKey)
	spans, err := chunkAll(t, c, gc.Params, stream(goldenSeed, gc.Length))
	if err != nil {
		t.Fatal(err)
	}
	gc.Chunks = make([]goldenChunk, len(spans))
	for i, s := range spans {
		gc.Chunks[i] = goldenChunk{Offset: s.Off, Length: s.Len, SHA256: hex.EncodeToString(s.Sum[:])}
	}
	return gc
}

func TestGolden(t *testing.T) {
	var got []goldenCase
	for _, gc := range goldenCases() {
		got = append(got, computeGolden(t, gc))
	}
	if *update {
		f := goldenFile{
			Comment: "Chunk boundaries of vaultbak's keyed FastCDC on ChaCha8 streams. Part of the repository format: " +
				"regenerate (go test ./chunk -run Golden -update) only for a deliberate format change.",
			Cases: got,
		}
		b, err := json.MarshalIndent(f, "", "\t")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", goldenPath, len(b)+1)
		return
	}
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run go test ./chunk -run Golden -update to create it)", err)
	}
	var want goldenFile
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("%s: %v", goldenPath, err)
	}
	for _, g := range got {
		t.Run(g.Name, func(t *testing.T) {
			var w *goldenCase
			for i := range want.Cases {
				if want.Cases[i].Name == g.Name {
					w = &want.Cases[i]
				}
			}
			if w == nil {
				t.Fatalf("case %s missing from %s", g.Name, goldenPath)
			}
			if w.Params != g.Params || w.Seed != g.Seed || w.Key != g.Key || w.Length != g.Length {
				t.Fatalf("inputs changed: golden %+v %s %s %d, test %+v %s %s %d",
					w.Params, w.Seed, w.Key, w.Length, g.Params, g.Seed, g.Key, g.Length)
			}
			for i := range max(len(w.Chunks), len(g.Chunks)) {
				if i >= len(w.Chunks) || i >= len(g.Chunks) || w.Chunks[i] != g.Chunks[i] {
					t.Fatalf("chunk %d differs from golden (%d chunks, now %d): the repository format changed", i, len(w.Chunks), len(g.Chunks))
				}
			}
			t.Logf("%d chunks match", len(g.Chunks))
		})
	}
}

// FuzzChunker checks tiling and stride independence on arbitrary input with
// the smallest parameters Validate allows.
func FuzzChunker(f *testing.F) {
	p := Params{Algorithm: AlgorithmFastCDC, Min: 64, Avg: 256, Max: 1024}
	f.Add([]byte{}, uint64(1))
	f.Add(bytes.Repeat([]byte{0}, 5000), uint64(2))
	f.Add(randomBytes("fuzz", 4099), uint64(3))
	key := testKey("fuzz")
	c1, c2 := newChunker(f, p, key), newChunker(f, p, key)
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		a, err := chunkAll(t, c1, p, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		checkCovers(t, a, data)
		sr := &strideReader{r: bytes.NewReader(data), rng: rand.New(rand.NewPCG(seed, 0))}
		b, err := chunkAll(t, c2, p, sr)
		if err != nil {
			t.Fatal(err)
		}
		if !equalInt64(boundaries(a), boundaries(b)) {
			t.Fatal("boundaries depend on read strides")
		}
	})
}

func BenchmarkChunker(b *testing.B) {
	const size = 64 * MiB
	data := randomBytes("bench", size)
	p := DefaultParams()
	drain := func(b *testing.B, next func() ([]byte, error)) {
		for {
			_, err := next()
			if err == io.EOF {
				return
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, bufSize := range []int{2 * p.Max, p.Max} {
		b.Run(fmt.Sprintf("keyed/buf=%dMiB", bufSize/MiB), func(b *testing.B) {
			c, err := New(p, testKey("bench"), make([]byte, bufSize))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			for b.Loop() {
				c.Reset(bytes.NewReader(data))
				drain(b, c.Next)
			}
		})
		// The library without a key (static Gear table), for comparison.
		b.Run(fmt.Sprintf("unkeyed/buf=%dMiB", bufSize/MiB), func(b *testing.B) {
			opts := &chunkers.ChunkerOpts{MinSize: p.Min, MaxSize: p.Max, NormalSize: p.Avg}
			c, err := chunkers.NewChunkerBuffer(p.Algorithm, bytes.NewReader(nil), opts, make([]byte, bufSize))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			for b.Loop() {
				c.Reset(bytes.NewReader(data))
				drain(b, func() ([]byte, error) {
					chunk, err := c.Next()
					if err == io.EOF && len(chunk) > 0 {
						err = nil // last chunk; the following call returns io.EOF
					}
					return chunk, err
				})
			}
		})
	}
}
