package crypt

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxKeyFile bounds the size of a key file read from disk.
const maxKeyFile = 1 << 20

// ReadKeyFile reads a secret key file, refusing one that group or others may
// read: a key that leaked to other users of the machine is not a key.
func ReadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("crypt: key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("crypt: key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("crypt: key file %s is readable by group or others (mode %04o); run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("crypt: key file %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("crypt: key file %s is too large to be a key file", path)
	}
	return data, nil
}

// ErrKeyFileExists is returned by WriteKeyFile when the file already exists.
var ErrKeyFileExists = errors.New("key file already exists")

// WriteKeyFile creates path with mode 0600 and writes data, never replacing
// an existing file (a lost key cannot be recovered).
func WriteKeyFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("crypt: key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("crypt: %s: %w", path, ErrKeyFileExists)
	}
	if err != nil {
		return fmt.Errorf("crypt: key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("crypt: key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("crypt: key file %s: %w", path, err)
	}
	return f.Close()
}
