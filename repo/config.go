package repo

import (
	"bytes"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"time"

	"vaultbak/backend"
	"vaultbak/chunk"
	"vaultbak/crypt"
)

// FormatVersion is the repository format this code writes and reads.
const FormatVersion = 1

// Default sizes; both are stored in the config at init and fixed after.
const (
	DefaultPackSize = 16 << 20
	maxConfigSize   = 4 << 20
)

// Config is the repository's public description, stored in every region.
// It is readable without keys (check needs the signer keys) and protected by
// a MAC keyed with a repository secret, so a storage operator cannot enrol a
// key of its own.
type Config struct {
	Version     int          `json:"version"`
	ID          string       `json:"id"`
	Created     time.Time    `json:"created"`
	Chunker     chunk.Params `json:"chunker"`
	PackSize    int          `json:"pack_size"`
	Compression string       `json:"compression"` // "zstd"
	KeyKind     string       `json:"key_kind"`    // crypt.KindHybrid or crypt.KindX25519
	Recovery    []string     `json:"recovery_recipients"`
	Hosts       []HostEntry  `json:"hosts"`
	// Keys names the keys/ object holding the current secrets (sealed to
	// Recovery and the writers of the non-revoked Hosts).
	Keys string `json:"keys"`
	// Serial counts config changes; a host remembers the newest it saw,
	// so an older config served again (a revoked host restored) is caught.
	Serial uint64 `json:"serial"`
	// Operators are the audit signing keys of recovery-identity holders,
	// the current one last (see audit.go).
	Operators []OperatorEntry `json:"operators,omitempty"`
	// ObjectLock, when set, locks what every S3 region stores of the
	// repository's history (see ObjectLock).
	ObjectLock *ObjectLock `json:"object_lock,omitempty"`
}

// ObjectLock is the repository's retention lock, chosen at init: packs,
// index files, manifests and audit records are stored in S3 regions under
// Object Lock for Days after each is written. The config and the key files
// are not: key rotation must be able to retire a recovery key, and the
// config changes with every enrolment.
type ObjectLock struct {
	Mode string `json:"mode"` // backend.LockGovernance or backend.LockCompliance
	Days int    `json:"days"`
}

// lockedPrefixes are the names an ObjectLock locks.
var lockedPrefixes = []string{"data/", "index/", "snapshots/", auditPrefix}

// backendLock is l as a backend.Lock.
func (l *ObjectLock) backendLock() backend.Lock {
	return backend.Lock{Mode: l.Mode, Period: time.Duration(l.Days) * 24 * time.Hour, Prefixes: lockedPrefixes}
}

// Validate reports whether l is one vaultbak can apply.
func (l *ObjectLock) Validate() error {
	if l.Mode != backend.LockGovernance && l.Mode != backend.LockCompliance {
		return fmt.Errorf("object lock mode %q is neither %s nor %s", l.Mode, backend.LockGovernance, backend.LockCompliance)
	}
	if l.Days < 1 || l.Days > 36500 {
		return fmt.Errorf("object lock period of %d days is out of range (1 to 36500)", l.Days)
	}
	return nil
}

// OperatorEntry is an audit signing key for operations run with the
// recovery identity. Its seed is sealed to the recovery recipients only,
// so a writer can neither read it nor sign as an operator.
type OperatorEntry struct {
	SigningKey crypt.PublicKey `json:"signing_key"`
	Seed       []byte          `json:"seed,omitempty"` // age-sealed to the recovery recipients; dropped when retired
	Created    time.Time       `json:"created"`
	// Retired is set when the recovery recipients changed: the key's
	// records after RetiredAfter (its audit chain position then) are
	// rejected, since a removed identity may have kept the seed.
	Retired      *time.Time `json:"retired,omitempty"`
	RetiredAfter uint64     `json:"retired_after,omitempty"`
}

// HostEntry is one enrolled backup host.
type HostEntry struct {
	Name            string          `json:"name"`
	WriterRecipient string          `json:"writer_recipient"`
	SigningKey      crypt.PublicKey `json:"signing_key"`
	Enrolled        time.Time       `json:"enrolled"`
	Revoked         *time.Time      `json:"revoked,omitempty"`
	// RevokedAfter is the host's newest chain position when it was
	// revoked: a manifest further along is rejected whatever time it
	// claims.
	RevokedAfter uint64 `json:"revoked_after,omitempty"`
	// AuditRevokedAfter is the host's audit chain position when it was
	// revoked; its records further along are rejected.
	AuditRevokedAfter uint64 `json:"audit_revoked_after,omitempty"`
}

// Writers returns the recipients of every non-revoked host.
func (c *Config) Writers() []string {
	var out []string
	for _, h := range c.Hosts {
		if h.Revoked == nil {
			out = append(out, h.WriterRecipient)
		}
	}
	return out
}

// Host returns the entry of the named host.
func (c *Config) Host(name string) (*HostEntry, bool) {
	for i := range c.Hosts {
		if c.Hosts[i].Name == name {
			return &c.Hosts[i], true
		}
	}
	return nil, false
}

// configFile is the stored form: the config's exact JSON bytes and their MAC.
type configFile struct {
	Format string          `json:"format"`
	Config json.RawMessage `json:"config"`
	MAC    string          `json:"mac"`
}

const configFormat = "vaultbak-config"

func configMAC(s *Secrets, raw []byte) string {
	return s.ConfigKey.Sum(raw).String()
}

func encodeConfig(c *Config, s *Secrets) ([]byte, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("repo: encode config: %w", err)
	}
	return json.Marshal(configFile{Format: configFormat, Config: raw, MAC: configMAC(s, raw)})
}

// decodeConfig parses a stored config. It does not check the MAC, which
// needs the secrets: see verifyConfig.
func decodeConfig(data []byte) (*Config, *configFile, error) {
	var f configFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, nil, fmt.Errorf("malformed config: %w", err)
	}
	if f.Format != configFormat {
		return nil, nil, fmt.Errorf("not a vaultbak repository config (format %q)", f.Format)
	}
	var c Config
	if err := json.Unmarshal(f.Config, &c); err != nil {
		return nil, nil, fmt.Errorf("malformed config: %w", err)
	}
	if c.Version != FormatVersion {
		return nil, nil, fmt.Errorf("repository format version %d is not supported (this vaultbak reads version %d)", c.Version, FormatVersion)
	}
	if err := c.Chunker.Validate(); err != nil {
		return nil, nil, fmt.Errorf("malformed config: %w", err)
	}
	if c.PackSize < 1<<20 || c.PackSize > 1<<30 {
		return nil, nil, fmt.Errorf("malformed config: pack size %d out of range", c.PackSize)
	}
	if c.ObjectLock != nil {
		if err := c.ObjectLock.Validate(); err != nil {
			return nil, nil, fmt.Errorf("malformed config: %w", err)
		}
	}
	return &c, &f, nil
}

func verifyConfig(f *configFile, s *Secrets) bool {
	return hmac.Equal([]byte(f.MAC), []byte(configMAC(s, f.Config)))
}
