package crypt

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
)

// MaxHeaderSize bounds the age header vaultbak accepts from a region: enough
// for dozens of post-quantum stanzas (~1.5 KB each), never unbounded.
const MaxHeaderSize = 256 << 10

// ErrNoIdentity is returned (wrapped) when none of the given identities can
// open a sealed object: the caller holds the wrong key or a key whose role
// does not cover this kind of object.
var ErrNoIdentity = errors.New("no identity can open it")

// Seal encrypts plaintext to every recipient and returns the age file.
func Seal(plaintext []byte, recipients []age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(plaintext) + len(plaintext)/(64<<10)*16 + 4096*len(recipients))
	w, err := age.Encrypt(&buf, recipients...)
	if err != nil {
		return nil, fmt.Errorf("crypt: seal: %w", err)
	}
	if _, err := w.Write(plaintext); err != nil {
		return nil, fmt.Errorf("crypt: seal: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("crypt: seal: %w", err)
	}
	return buf.Bytes(), nil
}

// Open decrypts a whole sealed object, refusing a plaintext larger than limit.
func Open(sealed []byte, limit int64, identities []age.Identity) ([]byte, error) {
	if err := checkHeaderSize(sealed); err != nil {
		return nil, err
	}
	r, err := age.Decrypt(bytes.NewReader(sealed), identities...)
	if err != nil {
		return nil, wrapOpenErr(err)
	}
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("crypt: open: %w", err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("crypt: open: plaintext larger than the %d-byte limit", limit)
	}
	return out, nil
}

// FileKey unwraps the header at the start of a sealed object read through src
// and returns its file key, so that [OpenAt] can later open the object without
// a key decapsulation. The file key opens that one object only: keep it
// secret and never reuse it for another.
func FileKey(src io.ReaderAt, size int64, identities []age.Identity) ([]byte, error) {
	hdr, err := age.ExtractHeader(io.NewSectionReader(src, 0, min(size, MaxHeaderSize)))
	if err != nil {
		return nil, fmt.Errorf("crypt: read header: %w", err)
	}
	key, err := age.DecryptHeader(hdr, identities...)
	if err != nil {
		return nil, wrapOpenErr(err)
	}
	return key, nil
}

// OpenAt returns a reader of the plaintext of the sealed object in src (of
// size bytes), opened with fileKey from [FileKey]. Reads are authenticated
// per 64 KiB chunk; the plaintext size is authenticated before OpenAt returns.
func OpenAt(src io.ReaderAt, size int64, fileKey []byte) (io.ReaderAt, int64, error) {
	r, n, err := openStream(src, size, fileKey)
	if err != nil {
		return nil, 0, fmt.Errorf("crypt: open: %w", err)
	}
	return r, n, nil
}

func checkHeaderSize(sealed []byte) error {
	// The header ends at the line that starts with "---"; a header without one
	// within MaxHeaderSize is malformed or hostile.
	end := bytes.Index(sealed[:min(len(sealed), MaxHeaderSize)], []byte("\n---"))
	if end < 0 {
		return errors.New("crypt: open: no age header within the size limit")
	}
	return nil
}

func wrapOpenErr(err error) error {
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return fmt.Errorf("crypt: %w", ErrNoIdentity)
	}
	return fmt.Errorf("crypt: open: %w", err)
}
