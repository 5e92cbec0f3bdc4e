package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"vaultbak/backend/local"
	"vaultbak/backup"
	"vaultbak/chunk"
	"vaultbak/crypt"
	"vaultbak/repo"
	"vaultbak/restore"
)

// Dataset shape. Changing any of these (or the generators) changes the
// bytes: bump datasetVersion so a kept VAULTBAK_BENCH_DIR is regenerated.
const (
	datasetVersion = 1
	randomBytes    = 128 << 20 // incompressible half
	textBytes      = 128 << 20 // compressible half
	bigFileSize    = 64 << 20  // one large file, alternating blocks of each kind
	bigFileBlock   = 4 << 20
	minFileSize    = 1 << 10 // the tree's files are log-uniform in size between these
	maxFileSize    = 4 << 20
	topDirs        = 16
)

// dataset is the generated tree every benchmark backs up.
type dataset struct {
	Root  string `json:"-"` // the directory backed up
	Bytes int64  `json:"bytes"`
	Files int    `json:"files"`
}

var (
	scratchOnce sync.Once
	scratchDir  string // this process's temp dir, removed by TestMain
	scratchErr  error

	dataOnce sync.Once
	data     *dataset
	dataErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if scratchDir != "" {
		os.RemoveAll(scratchDir)
	}
	os.Exit(code)
}

// scratch returns a new directory under this process's temp dir. Unlike
// b.TempDir it can be removed inside the loop, so that iterations do not
// pile up repositories of hundreds of MiB.
func scratch(b *testing.B, name string) string {
	b.Helper()
	scratchOnce.Do(func() { scratchDir, scratchErr = os.MkdirTemp("", "vaultbak-bench-") })
	if scratchErr != nil {
		b.Fatal(scratchErr)
	}
	dir, err := os.MkdirTemp(scratchDir, name+"-")
	if err != nil {
		b.Fatal(err)
	}
	return dir
}

// loadDataset returns the dataset, generating it on first use (in
// VAULTBAK_BENCH_DIR when set, else in the scratch dir).
func loadDataset(b *testing.B) *dataset {
	b.Helper()
	dataOnce.Do(func() {
		dir := os.Getenv("VAULTBAK_BENCH_DIR")
		if dir == "" {
			dir = scratch(b, "dataset")
		}
		data, dataErr = prepareDataset(dir)
	})
	if dataErr != nil {
		b.Fatalf("dataset: %v", dataErr)
	}
	return data
}

func prepareDataset(dir string) (*dataset, error) {
	root := filepath.Join(dir, "data")
	marker := filepath.Join(dir, fmt.Sprintf("complete-v%d.json", datasetVersion))
	if raw, err := os.ReadFile(marker); err == nil {
		ds := &dataset{Root: root}
		if err := json.Unmarshal(raw, ds); err == nil && ds.Bytes == randomBytes+textBytes {
			return ds, nil
		}
	}
	os.Remove(marker)
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	ds, err := generate(root)
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(ds)
	return ds, os.WriteFile(marker, raw, 0o644)
}

func seed(purpose string) [32]byte {
	return sha256.Sum256([]byte(fmt.Sprintf("vaultbak bench dataset v%d: %s", datasetVersion, purpose)))
}

// generate writes the dataset under root: files of random bytes (.bin) and
// of text (.txt) spread over a two-level tree, then big.img.
func generate(root string) (*dataset, error) {
	layout := rand.New(rand.NewChaCha8(seed("layout")))
	random := rand.NewChaCha8(seed("random"))
	text := newTextGen(seed("text"))

	var dirs []string
	for i := range topDirs {
		d := fmt.Sprintf("dir%02d", i)
		dirs = append(dirs, d)
		for j := range layout.IntN(4) {
			dirs = append(dirs, filepath.Join(d, fmt.Sprintf("sub%d", j)))
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	ds := &dataset{Root: root}
	write := func(name string, parts ...part) error {
		f, err := os.Create(filepath.Join(root, name))
		if err != nil {
			return err
		}
		for _, p := range parts {
			n, err := io.CopyN(f, p.src, p.n)
			ds.Bytes += n
			if err != nil {
				f.Close()
				return err
			}
		}
		ds.Files++
		return f.Close()
	}

	// The tree: half of what is left after big.img of each kind.
	budget := [2]int64{(randomBytes - bigFileSize/2), (textBytes - bigFileSize/2)}
	srcs := [2]io.Reader{random, text}
	exts := [2]string{".bin", ".txt"}
	for i := 0; budget[0]+budget[1] > 0; i++ {
		kind := layout.IntN(2)
		if budget[kind] == 0 {
			kind = 1 - kind
		}
		lo, hi := math.Log(minFileSize), math.Log(maxFileSize)
		size := min(int64(math.Exp(lo+layout.Float64()*(hi-lo))), budget[kind])
		budget[kind] -= size
		name := filepath.Join(dirs[layout.IntN(len(dirs))], fmt.Sprintf("file%04d%s", i, exts[kind]))
		if err := write(name, part{srcs[kind], size}); err != nil {
			return nil, err
		}
	}
	var blocks []part
	for i := range bigFileSize / bigFileBlock {
		blocks = append(blocks, part{srcs[i%2], bigFileBlock})
	}
	if err := write("big.img", blocks...); err != nil {
		return nil, err
	}
	return ds, nil
}

type part struct {
	src io.Reader
	n   int64
}

// textGen is an endless stream of source-like text: indented lines of words
// drawn from a 512-word vocabulary with a skewed frequency, with
// punctuation. zstd -1 stores it at about 30% of its size (Go source: about
// 23%); it holds no long repeats, so it does not deduplicate by itself.
type textGen struct {
	rng     *rand.Rand
	words   [][]byte
	pending []byte
}

func newTextGen(s [32]byte) *textGen {
	rng := rand.New(rand.NewChaCha8(s))
	g := &textGen{rng: rng}
	const letters = "etaoinshrdlcumwfgypbvkjxqz_"
	for range 512 {
		n := 2 + rng.IntN(9)
		w := make([]byte, n)
		for i := range w {
			// Skewed towards the front of letters, like English.
			w[i] = letters[min(rng.IntN(len(letters)), rng.IntN(len(letters)))]
		}
		g.words = append(g.words, w)
	}
	return g
}

func (g *textGen) line(buf []byte) []byte {
	for range g.rng.IntN(4) {
		buf = append(buf, '\t')
	}
	n := 2 + g.rng.IntN(10)
	for i := range n {
		// Zipf-like: small indices are far more frequent.
		idx := int(float64(len(g.words)) * math.Pow(g.rng.Float64(), 4))
		buf = append(buf, g.words[idx]...)
		switch r := g.rng.IntN(16); {
		case i == n-1:
		case r == 0:
			buf = append(buf, ", "...)
		case r == 1:
			buf = append(buf, "."...)
		case r == 2:
			buf = append(buf, "("...)
		case r == 3:
			buf = append(buf, ") "...)
		default:
			buf = append(buf, ' ')
		}
	}
	return append(buf, '\n')
}

func (g *textGen) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(g.pending) == 0 {
			g.pending = g.line(g.pending[:0])
		}
		c := copy(p[n:], g.pending)
		g.pending = g.pending[c:]
		n += c
	}
	return n, nil
}

// recovery is the recovery identity of every benchmark repository
// (hybrid, the CLI's default kind).
var recovery = sync.OnceValues(func() (age.Identity, error) {
	id, _, err := crypt.GenerateIdentity(crypt.KindHybrid)
	return id, err
})

// fixture is a repository on n local directory regions under dir.
type fixture struct {
	dir  string
	n    int
	host *crypt.HostCredential
}

func regions(b *testing.B, dir string, n int) []*repo.Region {
	b.Helper()
	var out []*repo.Region
	for i := range n {
		be, err := local.New(filepath.Join(dir, fmt.Sprintf("region-%d", i+1)))
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, &repo.Region{Name: fmt.Sprintf("region-%d", i+1), Backend: be})
	}
	return out
}

func initRepo(b *testing.B, dir string, n int) *fixture {
	b.Helper()
	id, err := recovery()
	if err != nil {
		b.Fatal(err)
	}
	rec, _ := crypt.IdentityRecipient(id)
	r, host, err := repo.Init(context.Background(), regions(b, dir, n), repo.InitOptions{Recovery: []string{rec}, Host: "bench", Now: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	r.Close()
	return &fixture{dir: dir, n: n, host: host}
}

// open opens the repository afresh, as a new CLI process would: with the
// host credential to write, or with the recovery identity to read.
func (f *fixture) open(b *testing.B, read bool) *repo.Repository {
	b.Helper()
	keys := repo.Keys{Host: f.host}
	if read {
		id, _ := recovery()
		keys = repo.Keys{Recovery: []age.Identity{id}}
	}
	r, err := repo.Open(context.Background(), regions(b, f.dir, f.n), keys)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// size returns the bytes stored in the first region.
func (f *fixture) size() int64 {
	var n int64
	filepath.WalkDir(filepath.Join(f.dir, "region-1"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// seeded is one repository holding one backup of the dataset, shared by the
// no-change and restore benchmarks.
type seeded struct {
	fx    *fixture
	first *repo.Snapshot // the initial backup
	head  *repo.Snapshot // the newest one
	cache *backup.Cache  // the newest backup's file cache
}

var (
	seedOnce sync.Once
	seedRepo *seeded
)

func seededRepo(b *testing.B, ds *dataset) *seeded {
	b.Helper()
	seedOnce.Do(func() {
		fx := initRepo(b, scratch(b, "seeded"), 1)
		r := fx.open(b, false)
		defer r.Close()
		res, err := backup.Run(context.Background(), r, backup.Options{Paths: []string{ds.Root}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		seedRepo = &seeded{fx: fx, first: res.Snapshot, head: res.Snapshot, cache: res.Cache}
	})
	if seedRepo == nil {
		b.Fatal("seeded repository: setup failed in an earlier benchmark")
	}
	return seedRepo
}

// cpuClock sums the CPU time (user + system, all threads) this process
// spends in the timed parts of a benchmark: on a machine whose cores other
// processes share, it moves far less than wall time.
type cpuClock struct{ total, t0 time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuClock) start() { c.t0 = processCPU() }
func (c *cpuClock) stop()  { c.total += processCPU() - c.t0 }

// report adds the CPU seconds per operation to b's results.
func (c *cpuClock) report(b *testing.B) {
	b.ReportMetric(c.total.Seconds()/float64(b.N), "cpu-s/op")
}

// heapPeak samples the bytes of live and not yet collected heap objects
// while a benchmark runs (runtime/metrics, no stop of the world) and
// reports the highest: what the pipeline holds at once, the part of peak
// RSS that the code decides. With VAULTBAK_BENCH_HEAPPROFILE=FILE it also
// writes the heap profile taken at the highest sample (in-use space as of
// the last GC before it: go tool pprof -sample_index=inuse_space).
type heapPeak struct {
	peak uint64
	stop chan struct{}
	done chan struct{}
}

func (h *heapPeak) start() {
	h.stop, h.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.done)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > h.peak {
				h.peak = v
				if f := os.Getenv("VAULTBAK_BENCH_HEAPPROFILE"); f != "" && v > 32<<20 {
					if out, err := os.Create(f); err == nil {
						pprof.Lookup("heap").WriteTo(out, 0)
						out.Close()
					}
				}
			}
		}
	}()
}

func (h *heapPeak) finish(b *testing.B) {
	close(h.stop)
	<-h.done
	b.ReportMetric(float64(h.peak)/(1<<20), "peak-heap-MiB")
}

// BenchmarkBackup is the initial backup of the dataset into a new
// repository on 1 and on 3 regions (every pack written to each).
func BenchmarkBackup(b *testing.B) {
	ds := loadDataset(b)
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("regions=%d", n), func(b *testing.B) {
			b.SetBytes(ds.Bytes)
			var added, stored int64
			var cpu cpuClock
			var heap heapPeak
			for range b.N {
				b.StopTimer()
				dir := scratch(b, "backup")
				fx := initRepo(b, dir, n)
				r := fx.open(b, false)
				runtime.GC()
				b.StartTimer()
				cpu.start()
				heap.start()
				res, err := backup.Run(context.Background(), r, backup.Options{Paths: []string{ds.Root}}, nil)
				heap.finish(b)
				cpu.stop()
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				added = int64(res.Snapshot.Stats.AddedBytes)
				stored = fx.size()
				r.Close()
				os.RemoveAll(dir)
				b.StartTimer()
			}
			cpu.report(b)
			b.ReportMetric(float64(added)/float64(ds.Bytes), "added/input")
			b.ReportMetric(float64(stored)/(1<<20), "region-MiB")
		})
	}
}

// BenchmarkBackupNoChange backs up the unchanged dataset again with the file
// cache of the previous run: every file should be skipped by its metadata.
func BenchmarkBackupNoChange(b *testing.B) {
	ds := loadDataset(b)
	s := seededRepo(b, ds)
	b.SetBytes(ds.Bytes)
	b.ResetTimer()
	var read, added uint64
	var cpu cpuClock
	for range b.N {
		b.StopTimer()
		r := s.fx.open(b, false)
		progress := &backup.Progress{}
		b.StartTimer()
		cpu.start()
		res, err := backup.Run(context.Background(), r, backup.Options{
			Paths:   []string{ds.Root},
			Cache:   s.cache,
			HeadSeq: s.head.Seq,
			HeadID:  s.head.ID,
		}, progress)
		cpu.stop()
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		s.head, s.cache = res.Snapshot, res.Cache
		read, added = progress.ReadBytes.Load(), res.Snapshot.Stats.AddedBytes
		r.Close()
		b.StartTimer()
	}
	cpu.report(b)
	b.ReportMetric(float64(read), "read-bytes")
	b.ReportMetric(float64(added), "added-bytes")
}

// BenchmarkRestore restores the initial backup of the dataset into an empty
// directory from a freshly opened repository (cold pack cache, warm page
// cache).
func BenchmarkRestore(b *testing.B) {
	ds := loadDataset(b)
	s := seededRepo(b, ds)
	b.SetBytes(ds.Bytes)
	b.ResetTimer()
	var cpu cpuClock
	var heap heapPeak
	for range b.N {
		b.StopTimer()
		r := s.fx.open(b, true)
		target := scratch(b, "restore")
		runtime.GC()
		b.StartTimer()
		cpu.start()
		heap.start()
		res, err := restore.Run(context.Background(), r, s.first, restore.Options{Target: target}, nil)
		heap.finish(b)
		cpu.stop()
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if int64(res.Bytes) != ds.Bytes || int(res.Files) != ds.Files {
			b.Fatalf("restored %d files, %d bytes; want %d files, %d bytes", res.Files, res.Bytes, ds.Files, ds.Bytes)
		}
		r.Close()
		os.RemoveAll(target)
		b.StartTimer()
	}
	cpu.report(b)
}

// BenchmarkStage measures, on one goroutine, each CPU stage the pipeline
// runs over every byte, on big.img (half random, half text): the ceilings
// that the whole pipeline divides between its workers. The compress stage
// uses the options repo.NewWriter uses and, like Writer.encode, decodes and
// re-hashes every compressed blob to verify it.
func BenchmarkStage(b *testing.B) {
	ds := loadDataset(b)
	input, err := os.ReadFile(filepath.Join(ds.Root, "big.img"))
	if err != nil {
		b.Fatal(err)
	}
	var key crypt.Key
	params := chunk.DefaultParams()
	// Chunk boundaries as the backup cuts them; the stages below work chunk by chunk.
	chunks := cut(b, input)

	b.Run("chunk", func(b *testing.B) {
		ch, err := chunk.New(params, key[:], nil)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(input)))
		for range b.N {
			ch.Reset(bytes.NewReader(input))
			for {
				if _, err := ch.Next(); err != nil {
					break
				}
			}
		}
	})
	b.Run("blake3", func(b *testing.B) {
		b.SetBytes(int64(len(input)))
		for range b.N {
			for _, c := range chunks {
				key.Sum(c)
			}
		}
	})
	// big.img alternates blocks of random bytes (even) and text (odd).
	var kinds [2][][]byte
	for i := 0; i < len(input); i += bigFileBlock {
		kinds[i/bigFileBlock%2] = append(kinds[i/bigFileBlock%2], cut(b, input[i:i+bigFileBlock])...)
	}
	for k, name := range []string{"random", "text"} {
		chunks := kinds[k]
		size := 0
		for _, c := range chunks {
			size += len(c)
		}
		b.Run("zstd-fastest/"+name, func(b *testing.B) {
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithLowerEncoderMem(true))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			var out int
			for range b.N {
				out = 0
				for _, c := range chunks {
					out += len(enc.EncodeAll(c, make([]byte, 0, len(c)/2)))
				}
			}
			b.ReportMetric(float64(out)/float64(size), "out/in")
		})
		b.Run("zstd-verify/"+name, func(b *testing.B) {
			enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true))
			dec, _ := zstd.NewReader(nil)
			var comp [][]byte
			for _, c := range chunks {
				comp = append(comp, enc.EncodeAll(c, nil))
			}
			b.SetBytes(int64(size))
			var buf []byte
			for range b.N {
				for _, c := range comp {
					buf, _ = dec.DecodeAll(c, buf[:0])
					key.Sum(buf)
				}
			}
		})
	}
	b.Run("seal-16MiB", func(b *testing.B) {
		id, err := recovery()
		if err != nil {
			b.Fatal(err)
		}
		rec, _ := crypt.IdentityRecipient(id)
		recipients, _, err := crypt.ParseRecipients([]string{rec})
		if err != nil {
			b.Fatal(err)
		}
		pack := input[:repo.DefaultPackSize]
		b.SetBytes(int64(len(pack)))
		for range b.N {
			if _, err := crypt.Seal(pack, recipients); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(input)))
		for range b.N {
			sha256.Sum256(input)
		}
	})
}

// cut returns copies of the chunks the backup cuts data into (with a zero
// chunker key).
func cut(b *testing.B, data []byte) [][]byte {
	b.Helper()
	var key crypt.Key
	ch, err := chunk.New(chunk.DefaultParams(), key[:], nil)
	if err != nil {
		b.Fatal(err)
	}
	ch.Reset(bytes.NewReader(data))
	var out [][]byte
	for {
		c, err := ch.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, bytes.Clone(c))
	}
}
