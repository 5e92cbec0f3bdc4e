package metrics

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vaultbak.prom")
	tf := New()
	tf.Set("x_up", "Whether it is up.", Labels{"region": "r1"}, 1)
	tf.Set("x_up", "Whether it is up.", Labels{"region": "r2"}, 0)
	tf.Set("x_rpo_seconds", "Age.", Labels{"region": "r1", "host": "h", "set": ""}, math.Inf(1))
	tf.Set("x_last", "Last.", nil, 1.7e9)
	if err := tf.Write(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("textfile mode %04o, want 0644 (node_exporter reads it as another user)", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("the directory holds %d files, want the textfile only (no temporary left)", len(entries))
	}
	tests := []struct {
		name string
		want map[string]float64 // by region label
	}{
		{"x_up", map[string]float64{"r1": 1, "r2": 0}},
		{"x_rpo_seconds", map[string]float64{"r1": math.Inf(1)}},
		{"x_last", map[string]float64{"": 1.7e9}},
		{"absent", map[string]float64{}},
	}
	for _, tc := range tests {
		got, err := Read(path, tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d samples, want %d: %v", tc.name, len(got), len(tc.want), got)
		}
		for _, s := range got {
			if w, ok := tc.want[s.Labels["region"]]; !ok || w != s.Value {
				t.Errorf("%s%v = %v, want %v", tc.name, s.Labels, s.Value, w)
			}
		}
	}

	bad := New()
	bad.Set("y", "Y.", Labels{"a": "1"}, 1)
	bad.Set("y", "Y.", Labels{"b": "1"}, 1)
	if err := bad.Write(path); err == nil {
		t.Error("a gauge set with two label sets wrote without an error")
	}
	if got, err := Read(filepath.Join(t.TempDir(), "none.prom"), "x_up"); err != nil || got != nil {
		t.Errorf("a missing textfile: %v, %v; want nothing and no error", got, err)
	}
	os.WriteFile(path, []byte("not { a textfile\n"), 0o644)
	if _, err := Read(path, "x_up"); err == nil {
		t.Error("a malformed textfile read without an error")
	}
}
