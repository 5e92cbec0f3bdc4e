package crypt

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"time"

	"filippo.io/age"
)

// HostCredential is what a backup host holds: the writer identity, which
// opens the index and the repository secrets but never chunk data, trees or
// snapshot bodies, and the key that signs its manifests. Its public halves
// are enrolled in the repository config.
type HostCredential struct {
	Host            string       // the host name manifests are signed as
	Repository      string       // the repository ID it is enrolled in
	Writer          age.Identity // writer role
	WriterRecipient string       // Writer's public recipient
	Signing         SigningKey
}

// NewHostCredential generates a credential for host whose writer identity is
// of kind (the kind of the repository's recovery recipients).
func NewHostCredential(host, repository, kind string) (*HostCredential, error) {
	id, rec, err := GenerateIdentity(kind)
	if err != nil {
		return nil, err
	}
	return &HostCredential{Host: host, Repository: repository, Writer: id, WriterRecipient: rec, Signing: GenerateSigningKey()}, nil
}

// Marshal returns the credential's file form: "key: value" lines after
// comments. The file holds secrets; write it 0600.
func (c *HostCredential) Marshal(now time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# vaultbak host credential: writes new snapshots, cannot read any.\n")
	fmt.Fprintf(&b, "# created: %s\n", now.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "host: %s\n", c.Host)
	fmt.Fprintf(&b, "repository: %s\n", c.Repository)
	fmt.Fprintf(&b, "writer-recipient: %s\n", c.WriterRecipient)
	fmt.Fprintf(&b, "signing-public-key: %s\n", c.Signing.Public())
	fmt.Fprintf(&b, "writer-identity: %s\n", c.Writer.(fmt.Stringer))
	fmt.Fprintf(&b, "signing-key: %s\n", c.Signing.text())
	return b.Bytes()
}

// ParseHostCredential parses the file form of a credential. Errors never
// quote the secret lines.
func ParseHostCredential(data []byte) (*HostCredential, error) {
	if len(data) > 64<<10 {
		return nil, fmt.Errorf("crypt: host credential file is too large")
	}
	c := &HostCredential{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("crypt: host credential line %d: want \"key: value\"", n)
		}
		v = strings.TrimSpace(v)
		switch k {
		case "host":
			c.Host = v
		case "repository":
			c.Repository = v
		case "writer-recipient", "signing-public-key":
			// derived from the secrets below; kept in the file for people
		case "writer-identity":
			ids, err := age.ParseIdentities(strings.NewReader(v))
			if err != nil || len(ids) != 1 {
				return nil, fmt.Errorf("crypt: host credential line %d: malformed writer identity", n)
			}
			c.Writer = ids[0]
			c.WriterRecipient, _ = IdentityRecipient(ids[0])
		case "signing-key":
			sk, err := parseSigningKey(v)
			if err != nil {
				return nil, fmt.Errorf("crypt: host credential line %d: %w", n, err)
			}
			c.Signing = sk
		default:
			if len(k) > 40 || strings.Contains(strings.ToUpper(k), "SECRET-KEY") { // never quote key material
				return nil, fmt.Errorf("crypt: host credential line %d: unknown key", n)
			}
			return nil, fmt.Errorf("crypt: host credential line %d: unknown key %q", n, truncate(k))
		}
	}
	switch {
	case c.Host == "":
		return nil, fmt.Errorf("crypt: host credential has no host line")
	case c.Writer == nil:
		return nil, fmt.Errorf("crypt: host credential has no writer-identity line")
	case c.Signing.priv == nil:
		return nil, fmt.Errorf("crypt: host credential has no signing-key line")
	}
	return c, nil
}
