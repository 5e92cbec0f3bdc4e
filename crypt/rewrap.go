package crypt

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
	"golang.org/x/crypto/hkdf"
)

// Rewrap returns sealed with its age header replaced by one that wraps the
// same file key to recipients: the payload is neither decrypted nor
// re-encrypted, so changing who can open an object costs one header, not
// the whole object. identities must open the current header. The header is
// written as age v1 specifies (stanzas, "---", HMAC-SHA-256 keyed by
// HKDF(file key, "header")), so age itself opens the result.
func Rewrap(sealed []byte, identities []age.Identity, recipients []age.Recipient) ([]byte, error) {
	if err := checkHeaderSize(sealed); err != nil {
		return nil, err
	}
	hdr, err := age.ExtractHeader(bytes.NewReader(sealed[:min(len(sealed), MaxHeaderSize)]))
	if err != nil {
		return nil, fmt.Errorf("crypt: rewrap: %w", err)
	}
	if !bytes.HasPrefix(sealed, hdr) {
		return nil, errors.New("crypt: rewrap: header is not in canonical form")
	}
	fileKey, err := age.DecryptHeader(hdr, identities...)
	if err != nil {
		return nil, wrapOpenErr(err)
	}
	if len(recipients) == 0 {
		return nil, errors.New("crypt: rewrap: no recipients")
	}
	var stanzas []*age.Stanza
	for _, r := range recipients {
		s, err := r.Wrap(fileKey)
		if err != nil {
			return nil, fmt.Errorf("crypt: rewrap: %w", err)
		}
		stanzas = append(stanzas, s...)
	}
	var b bytes.Buffer
	b.WriteString("age-encryption.org/v1\n")
	for _, s := range stanzas {
		writeStanza(&b, s)
	}
	b.WriteString("---")
	mac, err := headerMAC(fileKey, b.Bytes())
	if err != nil {
		return nil, err
	}
	b.WriteString(" " + base64.RawStdEncoding.EncodeToString(mac) + "\n")
	b.Write(sealed[len(hdr):])
	return b.Bytes(), nil
}

// writeStanza writes one recipient stanza: "-> type args…", then the body in
// unpadded standard base64, 64 columns a line, the last line shorter (so
// possibly empty).
func writeStanza(b *bytes.Buffer, s *age.Stanza) {
	b.WriteString("->")
	b.WriteString(" " + s.Type)
	for _, a := range s.Args {
		b.WriteString(" " + a)
	}
	b.WriteString("\n")
	body := base64.RawStdEncoding.EncodeToString(s.Body)
	for len(body) >= 64 {
		b.WriteString(body[:64] + "\n")
		body = body[64:]
	}
	b.WriteString(body + "\n")
}

func headerMAC(fileKey, headerUpToFooter []byte) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, fileKey, nil, []byte("header")), key); err != nil {
		return nil, err
	}
	h := hmac.New(sha256.New, key)
	h.Write(headerUpToFooter)
	return h.Sum(nil), nil
}
