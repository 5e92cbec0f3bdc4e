package crypt

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"filippo.io/age"
)

// Identity kinds. Every recipient of one repository is of one kind, because
// age refuses to mix post-quantum and classic recipients in one header.
const (
	KindHybrid = "hybrid" // ML-KEM-768 + X25519, age1pq1…
	KindX25519 = "x25519" // age1…
)

// GenerateIdentity returns a new age identity of kind and its recipient.
func GenerateIdentity(kind string) (age.Identity, string, error) {
	switch kind {
	case KindHybrid, "":
		id, err := age.GenerateHybridIdentity()
		if err != nil {
			return nil, "", fmt.Errorf("crypt: generate identity: %w", err)
		}
		return id, id.Recipient().String(), nil
	case KindX25519:
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return nil, "", fmt.Errorf("crypt: generate identity: %w", err)
		}
		return id, id.Recipient().String(), nil
	}
	return nil, "", fmt.Errorf("crypt: unknown identity kind %q (want %s or %s)", kind, KindHybrid, KindX25519)
}

// IdentityFile returns the text of an age identity file holding id, in the
// format age-keygen writes, so age's own tools can use it too.
func IdentityFile(id age.Identity, recipient string, now time.Time) []byte {
	s, ok := id.(fmt.Stringer)
	if !ok {
		panic("crypt: identity has no text form")
	}
	return fmt.Appendf(nil, "# created: %s\n# public key: %s\n%s\n", now.UTC().Format(time.RFC3339), recipient, s)
}

// ParseIdentities parses an age identity file. Errors never quote the file,
// which holds secrets.
func ParseIdentities(data []byte) ([]age.Identity, error) {
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("crypt: parse identities: %w", err)
	}
	return ids, nil
}

// ParseRecipient parses an age recipient (age1… or age1pq1…).
func ParseRecipient(s string) (age.Recipient, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.Contains(strings.ToUpper(s), "SECRET-KEY"): // age identities in either case, vaultbak signing keys
		return nil, fmt.Errorf("crypt: that is a secret identity, not a recipient (a recipient starts with age1)")
	case strings.HasPrefix(s, "age1pq1"):
		r, err := age.ParseHybridRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("crypt: parse recipient %q: %w", truncate(s), err)
		}
		return r, nil
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("crypt: parse recipient %q: %w", truncate(s), err)
		}
		return r, nil
	}
	return nil, fmt.Errorf("crypt: unknown recipient type %q", truncate(s))
}

// ParseRecipients parses each string with [ParseRecipient] and checks that
// all are of one kind, which it returns.
func ParseRecipients(ss []string) ([]age.Recipient, string, error) {
	var out []age.Recipient
	kind := ""
	for _, s := range ss {
		r, err := ParseRecipient(s)
		if err != nil {
			return nil, "", err
		}
		k := RecipientKind(s)
		if kind != "" && k != kind {
			return nil, "", fmt.Errorf("crypt: recipients mix kinds %s and %s, which age cannot seal to together", kind, k)
		}
		kind = k
		out = append(out, r)
	}
	return out, kind, nil
}

// RecipientKind returns KindHybrid or KindX25519 for a recipient string.
func RecipientKind(s string) string {
	if strings.HasPrefix(strings.TrimSpace(s), "age1pq1") {
		return KindHybrid
	}
	return KindX25519
}

// IdentityRecipient returns the recipient string of a native identity.
func IdentityRecipient(id age.Identity) (string, bool) {
	switch v := id.(type) {
	case *age.HybridIdentity:
		return v.Recipient().String(), true
	case *age.X25519Identity:
		return v.Recipient().String(), true
	}
	return "", false
}
