package chunk

import (
	"bytes"
	"io"
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
