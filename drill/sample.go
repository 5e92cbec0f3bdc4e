package drill

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"sort"

	"vaultbak/repo"
)

// file is one regular file of a snapshot.
type file struct {
	path string
	node *repo.Node
}

// choose returns the files to restore: at 100% (or more) all of them;
// otherwise a sample weighted by size, holding at least percent of the
// files' bytes (and so at least one file with content, when there is
// one). The choice depends only on the seed and the files' paths and
// sizes, so a drill with the same seed restores the same files.
//
// Each file draws a key -ln(u)/w, u uniform in (0,1) from the seed and its
// path, w its size (plus one, so empty files can be drawn); taking files
// in order of their keys samples without replacement with probability
// proportional to size (Efraimidis and Spirakis).
func choose(files []file, percent float64, seed string) []file {
	if percent >= 100 {
		return files
	}
	var total uint64
	for _, f := range files {
		total += f.node.Size
	}
	want := uint64(math.Ceil(float64(total) * percent / 100))
	if want == 0 {
		return nil
	}
	type keyed struct {
		key float64
		f   file
	}
	all := make([]keyed, len(files))
	for i, f := range files {
		h := sha256.New()
		h.Write([]byte(seed))
		h.Write([]byte{0})
		h.Write([]byte(f.path))
		u := (float64(binary.BigEndian.Uint64(h.Sum(nil))>>11) + 0.5) / (1 << 53)
		all[i] = keyed{-math.Log(u) / float64(f.node.Size+1), f}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].key != all[j].key {
			return all[i].key < all[j].key
		}
		return all[i].f.path < all[j].f.path
	})
	var out []file
	var got uint64
	for _, k := range all {
		if got >= want {
			break
		}
		out = append(out, k.f)
		got += k.f.node.Size
	}
	return out
}
