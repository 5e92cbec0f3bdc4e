package repo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"filippo.io/age"

	"vaultbak/crypt"
)

const maxKeysFile = 1 << 20

// Secrets are the repository's random keys. The keys of the data format
// (IDs, chunk boundaries, content hashes) are derived from Master for one
// purpose each (crypt.Key.Derive) and never change. ConfigKey MACs the
// config; it is replaced whenever a host is revoked, so a revoked host
// cannot MAC a config of its own.
type Secrets struct {
	Master    crypt.Key
	ConfigKey crypt.Key

	chunkID crypt.Key // keyed chunk and tree IDs
	chunker crypt.Key // keyed chunk boundaries
	content crypt.Key // keyed whole-file content hashes
}

func newSecrets(master crypt.Key) *Secrets {
	s := &Secrets{Master: master, ConfigKey: master.Derive("config mac")}
	s.chunkID = master.Derive("blob id")
	s.chunker = master.Derive("chunker gear table")
	s.content = master.Derive("file content")
	return s
}

// RepositoryID is derived from the master key: a config whose ID does not
// belong to the keys was paired with keys that are not the repository's,
// and a repository whose keys were replaced as a whole has a new ID, which
// hosts (their credential names the ID) and pinned configs notice.
func (s *Secrets) RepositoryID() string {
	k := s.Master.Derive("repository id")
	id := k.Sum(nil)
	return id.String()[:32]
}

// BlobID returns the keyed ID of a plaintext blob (a chunk or a tree).
func (s *Secrets) BlobID(data []byte) crypt.ID { return s.chunkID.Sum(data) }

// ChunkerKey keys the content-defined chunker.
func (s *Secrets) ChunkerKey() []byte { return s.chunker[:] }

// ContentKey keys whole-file content hashes.
func (s *Secrets) ContentKey() *crypt.Key { return &s.content }

type secretsFile struct {
	Format    string `json:"format"`
	Master    []byte `json:"master"`
	ConfigKey []byte `json:"config_key"`
}

func sealSecrets(s *Secrets, recipients []age.Recipient) ([]byte, string, error) {
	plain, err := json.Marshal(secretsFile{Format: "vaultbak-secrets-1", Master: s.Master[:], ConfigKey: s.ConfigKey[:]})
	if err != nil {
		return nil, "", err
	}
	sealed, err := crypt.Seal(plain, recipients)
	if err != nil {
		return nil, "", fmt.Errorf("repo: seal secrets: %w", err)
	}
	sum := sha256.Sum256(sealed)
	return sealed, "keys/" + hex.EncodeToString(sum[:]), nil
}

func openSecrets(sealed []byte, ids []age.Identity) (*Secrets, error) {
	plain, err := crypt.Open(sealed, 64<<10, ids)
	if err != nil {
		return nil, err
	}
	var f secretsFile
	if err := json.Unmarshal(plain, &f); err != nil || f.Format != "vaultbak-secrets-1" || len(f.Master) != crypt.KeySize || len(f.ConfigKey) != crypt.KeySize {
		return nil, fmt.Errorf("malformed secrets")
	}
	s := newSecrets(crypt.Key(f.Master))
	s.ConfigKey = crypt.Key(f.ConfigKey)
	return s, nil
}
