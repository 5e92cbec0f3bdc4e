package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"vaultbak/backend/local"
	"vaultbak/crypt"
)

var update = flag.Bool("update", false, "rewrite testdata/golden-repo and its keys (a new repository: commit the result)")

// The golden repository: written once by an earlier build (go test ./repo
// -run TestGoldenRepository -args -update) and committed; every later build
// must open, list, read and check it. Its keys are TEST KEYS.
const (
	goldenRepoDir      = "testdata/golden-repo"
	goldenRecoveryFile = "testdata/golden-repo.TEST-KEY.recovery-identity"
	goldenHostFile     = "testdata/golden-repo.TEST-KEY.host-credential"
	goldenExpectFile   = "testdata/golden-repo.expect.json"
	goldenHost         = "golden-host"
)

const goldenKeyWarning = "# TEST KEY for the golden repository in the vaultbak source tree. It protects nothing: never use it for real data.\n"

var (
	goldenTime1 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	goldenTime2 = time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
)

// goldenFiles is what the golden snapshots hold: path → chunks. Snapshot 1
// holds all but "new.txt"; snapshot 2 holds everything, so its "docs"
// subtree is snapshot 1's.
func goldenFiles() map[string][][]byte {
	return map[string][][]byte{
		"hello.txt":       {[]byte("hello, golden repository\n")},
		"docs/text.txt":   {textBlob(1001, 20000)},                          // compressed
		"docs/random.bin": {randomBlob(1002, 6000), randomBlob(1003, 4000)}, // two chunks, stored raw
		"docs/dup.txt":    {[]byte("hello, golden repository\n")},           // same chunk as hello.txt
		"caf\xe9":         nil,                                              // empty, name not UTF-8
		"new.txt":         {textBlob(1004, 3000)},
	}
}

type goldenExpect struct {
	Comment   string           `json:"comment"`
	ConfigID  string           `json:"config_id"`
	Snapshots []goldenSnapshot `json:"snapshots"`
	Blobs     int              `json:"blobs"`
}

type goldenSnapshot struct {
	ID   string   `json:"id"`
	Seq  uint64   `json:"seq"`
	Tree crypt.ID `json:"tree"`
}

func concat(chunks [][]byte) []byte { return bytes.Join(chunks, nil) }

// writeGoldenRepo creates the golden repository from scratch.
func writeGoldenRepo(t *testing.T) {
	ctx := context.Background()
	for _, p := range []string{goldenRepoDir, goldenRecoveryFile, goldenHostFile, goldenExpectFile} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(goldenRepoDir), 0o755); err != nil {
		t.Fatal(err)
	}
	id, rec, err := crypt.GenerateIdentity(crypt.KindX25519)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(goldenRecoveryFile, append([]byte(goldenKeyWarning), crypt.IdentityFile(id, rec, goldenTime1)...), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := local.New(goldenRepoDir)
	if err != nil {
		t.Fatal(err)
	}
	regions := []*Region{{Name: "golden", Backend: b}}
	r, host, err := Init(ctx, regions, InitOptions{Recovery: []string{rec}, Host: goldenHost, Chunker: testChunker, PackSize: testPackSize, Now: goldenTime1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := os.WriteFile(goldenHostFile, append([]byte(goldenKeyWarning), host.Marshal(goldenTime1)...), 0o644); err != nil {
		t.Fatal(err)
	}
	exp := goldenExpect{Comment: "what testdata/golden-repo holds; written with it by -update", ConfigID: r.Config().ID}
	files := goldenFiles()
	for i, at := range []time.Time{goldenTime1, goldenTime2} {
		w := newWriter(t, r)
		node := func(name string) Node {
			chunks := files[name]
			h := r.Secrets().ContentKey().Sum(concat(chunks))
			mtime := goldenTime1 // unchanged files keep their time, so "docs" deduplicates
			if name == "new.txt" {
				mtime = goldenTime2
			}
			n := Node{Name: []byte(name[strings.LastIndexByte(name, '/')+1:]), Type: NodeFile, Mode: 0o640, UID: 1000, GID: 1000, User: "golden", Group: "golden", MTime: mtime.UnixNano(), Size: uint64(len(concat(chunks))), Hash: &h}
			for _, c := range chunks {
				cid, err := w.SaveBlob(ctx, DataBlob, c)
				if err != nil {
					t.Fatal(err)
				}
				n.Content = append(n.Content, cid)
			}
			return n
		}
		saveTree := func(tr *Tree) crypt.ID {
			data, err := EncodeTree(tr)
			if err != nil {
				t.Fatal(err)
			}
			tid, err := w.SaveBlob(ctx, TreeBlob, data)
			if err != nil {
				t.Fatal(err)
			}
			return tid
		}
		docs := saveTree(&Tree{Nodes: []Node{node("docs/text.txt"), node("docs/random.bin"), node("docs/dup.txt")}})
		root := &Tree{Nodes: []Node{
			node("hello.txt"), node("caf\xe9"),
			{Name: []byte("docs"), Type: NodeDir, Mode: 0o750, MTime: goldenTime1.UnixNano(), Subtree: &docs},
			{Name: []byte("link"), Type: NodeSymlink, Mode: 0o777, LinkTarget: []byte("hello.txt")},
		}}
		if i == 1 {
			root.Nodes = append(root.Nodes, node("new.txt"))
		}
		rootID := saveTree(root)
		snaps, err := r.Snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seq, head := ChainHead(snaps, goldenHost)
		s, err := w.Commit(ctx, &Manifest{Time: at, Tags: []string{"golden"}, Tree: rootID, Stats: Stats{Files: uint64(len(root.Nodes)), Dirs: 1}},
			&ManifestBody{Paths: [][]byte{[]byte("/golden")}, Excludes: []string{"*.tmp"}}, seq, head)
		if err != nil {
			t.Fatal(err)
		}
		exp.Snapshots = append(exp.Snapshots, goldenSnapshot{ID: s.ID, Seq: s.Seq, Tree: s.Tree})
	}
	exp.Blobs = r.Index().Len()
	data, _ := json.MarshalIndent(&exp, "", "  ")
	if err := os.WriteFile(goldenExpectFile, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the golden repository so tests never write to testdata.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
	if err != nil {
		t.Fatalf("copy golden repository: %v (create it with -update)", err)
	}
	return dst
}

func goldenKeys(t *testing.T) (age.Identity, *crypt.HostCredential) {
	t.Helper()
	data, err := os.ReadFile(goldenRecoveryFile)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := crypt.ParseIdentities(data)
	if err != nil || len(ids) != 1 {
		t.Fatalf("recovery identity: %v", err)
	}
	data, err = os.ReadFile(goldenHostFile)
	if err != nil {
		t.Fatal(err)
	}
	host, err := crypt.ParseHostCredential(data)
	if err != nil {
		t.Fatal(err)
	}
	return ids[0], host
}

func TestGoldenRepository(t *testing.T) {
	if *update {
		writeGoldenRepo(t)
	}
	ctx := context.Background()
	var exp goldenExpect
	data, err := os.ReadFile(goldenExpectFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &exp); err != nil {
		t.Fatal(err)
	}
	recovery, host := goldenKeys(t)
	dir := copyDir(t, goldenRepoDir)
	b, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	regions := []*Region{{Name: "golden", Backend: b}}
	r, err := Open(ctx, regions, Keys{Recovery: []age.Identity{recovery}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	cfg := r.Config()
	if cfg.ID != exp.ConfigID || cfg.Version != 1 || cfg.Chunker != testChunker || cfg.PackSize != testPackSize || cfg.KeyKind != crypt.KindX25519 || cfg.Compression != "zstd" {
		t.Fatalf("config: %+v", cfg)
	}
	if len(cfg.Hosts) != 1 || cfg.Hosts[0].Name != goldenHost || cfg.Hosts[0].SigningKey != host.Signing.Public() || !cfg.Created.Equal(goldenTime1) {
		t.Fatalf("config hosts: %+v", cfg.Hosts)
	}
	if r.Index().Len() != exp.Blobs {
		t.Fatalf("index holds %d blobs, golden %d", r.Index().Len(), exp.Blobs)
	}

	snaps, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots", len(snaps))
	}
	files := goldenFiles()
	subtrees := make([][]crypt.ID, len(snaps))
	for i, s := range snaps {
		want := exp.Snapshots[i]
		if s.ID != want.ID || s.Seq != want.Seq || s.Tree != want.Tree || s.Host != goldenHost || s.Region != "golden" {
			t.Fatalf("snapshot %d: %s seq %d tree %s host %s", i, s.ID, s.Seq, s.Tree, s.Host)
		}
		if i > 0 && s.Prev != snaps[i-1].ID || i == 0 && s.Prev != "" {
			t.Errorf("snapshot %d: prev %q", i, s.Prev)
		}
		if at := []time.Time{goldenTime1, goldenTime2}[i]; !s.Time.Equal(at) || len(s.Tags) != 1 || s.Tags[0] != "golden" {
			t.Errorf("snapshot %d: time %s tags %v", i, s.Time, s.Tags)
		}
		body, err := r.Body(context.Background(), s)
		if err != nil || len(body.Paths) != 1 || string(body.Paths[0]) != "/golden" || len(body.Excludes) != 1 {
			t.Fatalf("snapshot %d body: %+v, %v", i, body, err)
		}

		// Walk the tree and compare every file with what was stored.
		got := map[string][]byte{}
		var walk func(prefix string, id crypt.ID)
		walk = func(prefix string, id crypt.ID) {
			tree, err := r.LoadTree(ctx, id)
			if err != nil {
				t.Fatalf("snapshot %d: tree %s: %v", i, prefix, err)
			}
			for _, n := range tree.Nodes {
				name := prefix + string(n.Name)
				switch n.Type {
				case NodeDir:
					subtrees[i] = append(subtrees[i], *n.Subtree)
					walk(name+"/", *n.Subtree)
				case NodeSymlink:
					if string(n.LinkTarget) != "hello.txt" {
						t.Errorf("link target %q", n.LinkTarget)
					}
				case NodeFile:
					var content []byte
					for _, c := range n.Content {
						chunk, err := r.LoadBlob(ctx, c, nil)
						if err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						content = append(content, chunk...)
					}
					if n.Hash == nil || r.Secrets().ContentKey().Sum(content) != *n.Hash || uint64(len(content)) != n.Size {
						t.Errorf("%s: content hash or size differs", name)
					}
					got[name] = content
				default:
					t.Errorf("%s: type %s", name, n.Type)
				}
			}
		}
		walk("", s.Tree)
		for name, chunks := range files {
			c, ok := got[name]
			if name == "new.txt" && i == 0 {
				if ok {
					t.Error("snapshot 1 holds new.txt")
				}
				continue
			}
			if !ok || !bytes.Equal(c, concat(chunks)) {
				t.Errorf("snapshot %d: %q differs or is missing", i, name)
			}
		}
	}
	if snaps[0].Tree == snaps[1].Tree {
		t.Error("both snapshots have one root tree")
	}
	if len(subtrees[0]) != 1 || len(subtrees[1]) != 1 || subtrees[0][0] != subtrees[1][0] {
		t.Errorf("the unchanged directory has subtrees %v in the two snapshots, want one shared", subtrees)
	}
	if exp.Blobs != 9 { // 5 distinct chunks, the docs tree, two root trees, one body (same paths: deduplicated)
		t.Errorf("golden repository holds %d blobs, want 9", exp.Blobs)
	}

	// check, with and without keys, finds nothing.
	for name, keys := range map[string]Keys{"no keys": {}, "host": {Host: host}, "recovery": {Recovery: []age.Identity{recovery}}} {
		cr, err := Open(ctx, regions, keys)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		res, err := cr.Check(ctx, CheckOptions{ReadData: keys.Recovery != nil})
		cr.Close()
		if err != nil || len(res.Problems) != 0 || len(res.Warnings) != 0 {
			t.Fatalf("check (%s): %v, problems %v, warnings %v", name, err, res.Problems, res.Warnings)
		}
		if res.Snapshots != 2 {
			t.Errorf("check (%s) verified %d snapshots", name, res.Snapshots)
		}
		if keys.Recovery != nil && res.Blobs != exp.Blobs {
			t.Errorf("check verified %d blobs, golden %d", res.Blobs, exp.Blobs)
		}
	}

	// The golden host credential still writes: unchanged data adds nothing,
	// and the chain continues.
	hr, err := Open(ctx, regions, Keys{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Close()
	if _, err := hr.LoadBlob(ctx, snaps[0].Tree, nil); !errors.Is(err, ErrNeedRecovery) {
		t.Errorf("golden host LoadBlob: %v", err)
	}
	w := newWriter(t, hr)
	var ids []crypt.ID
	for _, name := range []string{"hello.txt", "docs/text.txt", "docs/random.bin"} {
		ids = append(ids, saveAll(t, w, files[name])...)
	}
	if w.NewBlobs() != 0 {
		t.Errorf("saving golden content again stored %d blobs", w.NewBlobs())
	}
	s3 := commitTree(t, hr, w, "again", ids, goldenTime2.Add(time.Hour))
	if s3.Seq != 3 || s3.Prev != snaps[1].ID {
		t.Errorf("new snapshot: seq %d prev %.12s", s3.Seq, s3.Prev)
	}
	rr, err := Open(ctx, regions, Keys{Recovery: []age.Identity{recovery}})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	if s, err := rr.FindSnapshot(ctx, "latest", Filter{}); err != nil || s.ID != s3.ID {
		t.Fatalf("latest after a new backup: %v", err)
	}
	if s, err := rr.FindSnapshot(ctx, "latest", Filter{At: goldenTime2}); err != nil || s.ID != exp.Snapshots[1].ID {
		t.Fatalf("latest --at: %v", err)
	}
}

// The golden repository stays small, and its keys are marked as test keys.
func TestGoldenRepositoryIsSmall(t *testing.T) {
	var total int64
	filepath.WalkDir(goldenRepoDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			total += fi.Size()
		}
		return nil
	})
	if total == 0 || total > 200<<10 {
		t.Errorf("golden repository holds %d bytes, want 1 to 200 KiB", total)
	}
	for _, p := range []string{goldenRecoveryFile, goldenHostFile} {
		data, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(data, []byte(goldenKeyWarning)) {
			t.Errorf("%s does not start with the test-key warning (%v)", p, err)
		}
	}
}
