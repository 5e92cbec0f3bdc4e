package chunk

import (
	"bytes"
	"io"
	"math"
	"math/rand/v2"
	"testing"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
)

// The chunker's cut points are go-cdc-chunkers' fastcdc-v1.0.0's, byte for
// byte, whatever the sizes, the key and the data: random bytes, zeros,
// repeated text and low-entropy bytes.
func TestCutMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 6<<20)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	lowEntropy := make([]byte, 6<<20)
	for i := range lowEntropy {
		lowEntropy[i] = " -0123456789|"[rng.IntN(13)]
	}
	inputs := map[string][]byte{
		"random":      random,
		"zeros":       make([]byte, 5<<20+77),
		"text":        bytes.Repeat([]byte("INSERT INTO pgbench_accounts VALUES (1, 1, 0, '                    ');\n"), 80000),
		"low-entropy": lowEntropy,
		"short":       random[:3000],
	}
	params := []paramsCase{
		{"default", DefaultParams()},
		{"small", smallParams},
		{"library-defaults", Params{Algorithm: AlgorithmFastCDC, Min: 2 << 10, Avg: 8 << 10, Max: 64 << 10}},
		{"wide", Params{Algorithm: AlgorithmFastCDC, Min: 4 << 10, Avg: 64 << 10, Max: 1 << 20}},
	}
	for _, key := range [][]byte{testKey("cut a"), testKey("cut b")} {
		for _, pc := range params {
			for name, data := range inputs {
				want := cuts(t, AlgorithmFastCDC, pc.p, key, data)
				got := cuts(t, cutName, pc.p, key, data)
				if len(got) != len(want) {
					t.Errorf("%s, %s: %d chunks, library %d", pc.name, name, len(got), len(want))
					continue
				}
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("%s, %s: chunk %d ends at %d, library at %d", pc.name, name, i, got[i], want[i])
						break
					}
				}
			}
		}
	}
}

type paramsCase struct {
	name string
	p    Params
}

// cuts returns the end offsets of the chunks algorithm makes of data.
func cuts(t *testing.T, algorithm string, p Params, key, data []byte) []int {
	t.Helper()
	c, err := chunkers.NewChunker(algorithm, bytes.NewReader(data), &chunkers.ChunkerOpts{MinSize: p.Min, MaxSize: p.Max, NormalSize: p.Avg, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	off := 0
	for {
		b, err := c.Next()
		off += len(b)
		if len(b) > 0 {
			out = append(out, off)
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkCut(b *testing.B) {
	data := bytes.Repeat([]byte("INSERT INTO pgbench_accounts VALUES (1, 1, 0, '      ');\n"), 1<<18)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < len(data); i += 97 {
		data[i] = byte(rng.Uint32())
	}
	for _, algorithm := range []string{AlgorithmFastCDC, cutName} {
		b.Run(algorithm, func(b *testing.B) {
			c, err := chunkers.NewChunker(algorithm, nil, &chunkers.ChunkerOpts{MinSize: 64 << 10, MaxSize: 2 << 20, NormalSize: 512 << 10, Key: testKey("bench")})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				c.Reset(bytes.NewReader(data))
				for {
					if _, err := c.Next(); err != nil {
						break
					}
				}
			}
		})
	}
}

// serialFirst is the plain scan that fastCut.first computes in two lanes.
func serialFirst(g *[256]uint64, d []byte, start, from, end int, mask uint64) int {
	var fp uint64
	for i := start; i < end; i++ {
		fp = fp<<1 + g[d[i]]
		if i >= from && fp&mask == 0 {
			return i
		}
	}
	return -1
}

// The two lanes find what one scan finds, wherever the cut falls: in
// either lane, near their edges, in the 63 bytes a lane's hash is started
// from, or nowhere, for masks that cut every few hundred bytes up to
// never.
func TestFirstMatchesSerial(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	d := make([]byte, 6*lane) // a few lane pairs, and a tail
	for i := range d {
		d[i] = byte(rng.Uint32())
	}
	c := &fastCut{g: gearTable(testKey("lanes"))}
	for _, mask := range []uint64{spacedMask(8), spacedMask(11), spacedMask(13), spacedMask(16), spacedMask(64)} {
		for range 2000 {
			start := rng.IntN(len(d))
			from := start + rng.IntN(min(len(d)-start, 200)+1)
			if rng.IntN(2) == 0 {
				from = start + rng.IntN(len(d)-start+1)
			}
			end := from + rng.IntN(len(d)-from+1)
			want := serialFirst(&c.g, d, start, from, end, mask)
			if got := c.first(d, start, from, end, mask); got != want {
				t.Fatalf("mask %#x, start %d, from %d, end %d: first cut at %d, serial scan %d", mask, start, from, end, got, want)
			}
		}
	}
}

// BenchmarkFirst measures the scan alone, without the library's buffering.
func BenchmarkFirst(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	d := make([]byte, 8<<20)
	for i := range d {
		d[i] = byte(rng.Uint32())
	}
	c := &fastCut{g: gearTable(testKey("bench"))}
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(int64(len(d)))
		for b.Loop() {
			serialFirst(&c.g, d, 0, 0, len(d), math.MaxUint64)
		}
	})
	b.Run("lanes", func(b *testing.B) {
		b.SetBytes(int64(len(d)))
		for b.Loop() {
			c.first(d, 0, 0, len(d), math.MaxUint64)
		}
	})
}
