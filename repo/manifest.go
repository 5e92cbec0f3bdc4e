package repo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"vaultbak/crypt"
)

// Manifest describes one snapshot. Everything in it is signed by the host;
// the Body is a blob (paths and details a writer or a storage operator must
// not read), sealed in a pack to the recovery recipients.
type Manifest struct {
	Version    int       `json:"version"`
	Repository string    `json:"repository"` // config ID: a manifest copied from another repository fails
	Host       string    `json:"host"`
	Time       time.Time `json:"time"`
	Tags       []string  `json:"tags,omitempty"`
	Set        string    `json:"set,omitempty"`
	Seq        uint64    `json:"seq"`            // chain position, 1 for a host's first snapshot
	Prev       string    `json:"prev,omitempty"` // ID of the host's previous manifest
	Tree       crypt.ID  `json:"tree"`           // root tree blob
	// Regions are the names of the regions the snapshot was committed to
	// (in a quorum). A region named here that lacks the manifest hid or
	// lost it; one not named lagged when it was written.
	Regions []string `json:"regions"`
	// PrevIn holds, for each region the host saw when it wrote the
	// manifest, the position of the host's newest manifest that region
	// held then (0: none). It tells a manifest missing from a region
	// because it was never written there (the region lagged, or a backup
	// set is pinned elsewhere) from one deleted there, so that a region
	// read alone, or a chain with such holes, verifies.
	PrevIn map[string]uint64 `json:"prev_in,omitempty"`
	Stats  Stats             `json:"stats"`
	Body   crypt.ID          `json:"body"` // MetaBlob holding the ManifestBody
}

// Stats are a snapshot's totals. Files, Dirs and Bytes describe the
// content: a manifest holds them sealed in its body (ContentStats), since
// a storage operator must not read how many files a snapshot holds or how
// big a single backed-up file is (a stream snapshot's Bytes is its size).
// Only AddedBytes and NewBlobs, which the new packs show anyway, are
// public. Manifests written before that carry all five in the clear.
type Stats struct {
	Files      uint64 `json:"files,omitempty"`
	Dirs       uint64 `json:"dirs,omitempty"`
	Bytes      uint64 `json:"bytes,omitempty"` // total file content size
	AddedBytes uint64 `json:"added_bytes"`     // stored bytes of new packs
	NewBlobs   uint64 `json:"new_blobs"`
}

// ContentStats are the totals a manifest body seals.
type ContentStats struct {
	Files uint64 `json:"files"`
	Dirs  uint64 `json:"dirs"`
	Bytes uint64 `json:"bytes"`
}

// ManifestBody is the part of a manifest only recovery identities read.
type ManifestBody struct {
	Paths    [][]byte `json:"paths"` // as given to backup, absolute
	Excludes []string `json:"excludes,omitempty"`
	Stream   string   `json:"stream,omitempty"` // the file name of a stdin backup
	// Stats are the content totals (absent in bodies written before they
	// left the public manifest).
	Stats *ContentStats `json:"stats,omitempty"`
}

// signedManifest is the stored form of a manifest.
type signedManifest struct {
	Format   string          `json:"format"`
	Manifest json.RawMessage `json:"manifest"`
	Signer   crypt.PublicKey `json:"signer"`
	Sig      []byte          `json:"sig"`
}

const (
	manifestFormat  = "vaultbak-manifest"
	maxManifestSize = 1 << 20
)

// Snapshot is a manifest read from the repository with its ID.
type Snapshot struct {
	ID string
	Manifest
	Signer crypt.PublicKey
	Region string // the region it was read from
	// In are the regions whose listing held the manifest when it was read.
	In []string
	// StatsKnown says whether Stats.Files, Dirs and Bytes are filled in:
	// from the body (LoadContentStats) or a manifest that held them.
	StatsKnown bool
}

func snapshotName(id string) string { return "snapshots/" + id }

// Held returns how much of a chain (of a host's manifests or a signer's
// audit records) each region holds once the element at seq, whose PrevIn
// is prevIn, is written to regions: what a machine keeps as its
// high-water mark, to tell a region that lost elements from one that
// never had them.
func Held(prevIn map[string]uint64, regions []string, seq uint64) map[string]uint64 {
	held := maps.Clone(prevIn)
	if held == nil {
		held = map[string]uint64{}
	}
	for _, reg := range regions {
		held[reg] = seq
	}
	return held
}

// raiseHeld returns prevIn raised to what a high-water mark says each
// region held (capped at head, the element the new one follows): regions
// that do not answer now keep their place in the new element's PrevIn.
func raiseHeld(prevIn, held map[string]uint64, head uint64) map[string]uint64 {
	for reg, h := range held {
		if prevIn == nil {
			prevIn = map[string]uint64{}
		}
		prevIn[reg] = max(prevIn[reg], min(h, head))
	}
	return prevIn
}

func signManifest(m *Manifest, key crypt.SigningKey) (id string, data []byte, err error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(raw)
	data, err = json.Marshal(signedManifest{Format: manifestFormat, Manifest: raw, Signer: key.Public(), Sig: key.Sign(manifestSignedBytes(raw))})
	return hex.EncodeToString(sum[:]), data, err
}

// manifestSignedBytes domain-separates manifest signatures from every other
// signature a host key makes.
func manifestSignedBytes(raw []byte) []byte {
	return append([]byte("vaultbak manifest v1\n"), raw...)
}

// decodeManifest parses a stored manifest named id and checks that the name
// matches its content and that the signature is valid for the key it names.
// Whether that key is enrolled for the host is the caller's check.
func decodeManifest(id string, data []byte) (*Snapshot, error) {
	var sm signedManifest
	if err := json.Unmarshal(data, &sm); err != nil {
		return nil, fmt.Errorf("malformed manifest: %w", err)
	}
	if sm.Format != manifestFormat {
		return nil, fmt.Errorf("malformed manifest: format %q", sm.Format)
	}
	sum := sha256.Sum256(sm.Manifest)
	if hex.EncodeToString(sum[:]) != id {
		return nil, fmt.Errorf("content does not match its name")
	}
	if err := sm.Signer.Verify(manifestSignedBytes(sm.Manifest), sm.Sig); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	s := &Snapshot{ID: id, Signer: sm.Signer}
	if err := json.Unmarshal(sm.Manifest, &s.Manifest); err != nil {
		return nil, fmt.Errorf("malformed manifest: %w", err)
	}
	if s.Version != FormatVersion {
		return nil, fmt.Errorf("manifest version %d is not supported", s.Version)
	}
	s.StatsKnown = s.Stats.Files != 0 || s.Stats.Dirs != 0 || s.Stats.Bytes != 0
	return s, nil
}
