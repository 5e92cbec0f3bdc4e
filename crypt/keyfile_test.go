package crypt

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestReadKeyFileRefusesReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o606, 0o777, 0o610} {
		p := filepath.Join(dir, mode.String())
		if err := os.WriteFile(p, []byte("AGE-SECRET-KEY-1XYZ"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadKeyFile(p)
		if err == nil {
			t.Errorf("mode %04o: ReadKeyFile succeeded", mode)
			continue
		}
		if bytes.Contains([]byte(err.Error()), []byte("XYZ")) {
			t.Errorf("mode %04o: error quotes the file: %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400, 0o700} {
		p := filepath.Join(dir, "ok"+mode.String())
		if err := os.WriteFile(p, []byte("key"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if got, err := ReadKeyFile(p); err != nil || string(got) != "key" {
			t.Errorf("mode %04o: ReadKeyFile = %q, %v", mode, got, err)
		}
	}
}

func TestReadKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxKeyFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(big); err == nil {
		t.Error("ReadKeyFile accepted a file above the size limit")
	}
	exact := filepath.Join(dir, "exact")
	if err := os.WriteFile(exact, make([]byte, maxKeyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(exact); err != nil {
		t.Errorf("file of exactly the limit: %v", err)
	}
}

func TestWriteKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "dir", "host.key")
	if err := WriteKeyFile(p, []byte("secret one")); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	dst, err := os.Stat(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm()&0o077 != 0 {
		t.Errorf("created directory mode %04o, want no group/other access", dst.Mode().Perm())
	}
	if got, err := ReadKeyFile(p); err != nil || string(got) != "secret one" {
		t.Fatalf("ReadKeyFile = %q, %v", got, err)
	}

	err = WriteKeyFile(p, []byte("secret two"))
	if !errors.Is(err, ErrKeyFileExists) {
		t.Fatalf("second WriteKeyFile: %v, want ErrKeyFileExists", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "secret one" {
		t.Fatalf("existing key file was changed to %q", got)
	}
	// Not even a symlink to a new name is followed into an overwrite.
	link := filepath.Join(dir, "link.key")
	target := filepath.Join(dir, "target.key")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(link, []byte("x")); !errors.Is(err, ErrKeyFileExists) {
		t.Errorf("WriteKeyFile over a symlink: %v, want ErrKeyFileExists", err)
	}
	if got, _ := os.ReadFile(target); string(got) != "keep" {
		t.Errorf("symlink target was changed to %q", got)
	}
}
