package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"vaultbak/backend"
)

// VerifyObject checks, without any key, that data is a plausible copy of
// the object called name: packs, index files and key files must hash to
// their names, manifests must hash to their IDs and carry a valid
// signature, and so must audit records. Replication uses it before it copies an object into a region.
// The config cannot be checked without the secrets; it passes.
func VerifyObject(name string, data []byte) error {
	switch {
	case name == "config":
		if _, _, err := decodeConfig(data); err != nil {
			return err
		}
		return nil
	case strings.HasPrefix(name, "data/"), strings.HasPrefix(name, "index/"), strings.HasPrefix(name, "keys/"):
		want, ok := hashFromName(name)
		if !ok {
			return fmt.Errorf("unexpected object name %s", name)
		}
		if objectHash(data) != want {
			return fmt.Errorf("%s: content does not match its hash", name)
		}
		return nil
	case strings.HasPrefix(name, auditPrefix):
		if _, err := decodeAudit(name, data); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	case strings.HasPrefix(name, "snapshots/"):
		if _, err := decodeManifest(strings.TrimPrefix(name, "snapshots/"), data); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("unexpected object name %s", name)
}

// VerifyEnrolled checks, without any key, that the manifest or audit
// record data stored as name is one the repository whose config is config
// accepts: of this repository, signed by the key enrolled for its host (or
// an operator key), not after a revocation; what reads check of every
// manifest and record. Other objects pass. The config's own MAC needs the
// secrets; the caller chooses which copy to trust (replication: the one
// already in the region it writes to).
func VerifyEnrolled(config []byte, name string, data []byte) error {
	if !strings.HasPrefix(name, "snapshots/") && !strings.HasPrefix(name, auditPrefix) {
		return nil
	}
	cfg, _, err := decodeConfig(config)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	r := &Repository{cfg: cfg}
	if strings.HasPrefix(name, auditPrefix) {
		e, err := decodeAudit(name, data)
		if err == nil {
			err = r.verifyAuditSigner(e)
		}
		return err
	}
	s, err := decodeManifest(strings.TrimPrefix(name, "snapshots/"), data)
	if err == nil {
		err = r.verifySigner(s)
	}
	return err
}

// VerifyStored checks, without any key, the copy of the object called name
// that reg holds, as Check does: packs, index and key files are hashed as
// they stream (so memory does not grow with their size); manifests, audit
// records and the config are read whole within their size caps and checked
// by VerifyObject. It returns the bytes read. A damaged copy is an
// *IntegrityError naming the region and the object; a copy that cannot be
// read is a *RegionError (wrapping backend.ErrNotFound when it is gone).
func VerifyStored(ctx context.Context, reg *Region, name string) (int64, error) {
	var limit int64
	switch {
	case strings.HasPrefix(name, "data/"), strings.HasPrefix(name, "index/"), strings.HasPrefix(name, "keys/"):
		return hashObject(ctx, reg, name)
	case strings.HasPrefix(name, "snapshots/"):
		limit = maxManifestSize
	case strings.HasPrefix(name, auditPrefix):
		limit = maxAuditRecord
	case name == "config":
		limit = maxConfigSize
	default:
		return 0, &IntegrityError{Region: reg.Name, Object: name, Reason: "unexpected object name"}
	}
	data, err := backend.ReadAll(ctx, reg.Backend, name, limit)
	if errors.Is(err, backend.ErrTooLarge) {
		return 0, &IntegrityError{Region: reg.Name, Object: name, Reason: fmt.Sprintf("larger than the %d-byte cap", limit)}
	}
	if err != nil {
		return 0, &RegionError{reg.Name, fmt.Errorf("read %s: %w", name, err)}
	}
	if err := VerifyObject(name, data); err != nil {
		return int64(len(data)), &IntegrityError{Region: reg.Name, Object: name, Reason: strings.TrimPrefix(err.Error(), name+": ")}
	}
	return int64(len(data)), nil
}

// ManifestHead is what replication needs to know of a manifest without
// keys: whose chain it belongs to and where.
type ManifestHead struct {
	ID   string
	Host string
	Seq  uint64
}

// ParseManifestHead reads a stored manifest's host and chain position,
// verifying its name and signature but not the signer's enrolment.
func ParseManifestHead(id string, data []byte) (ManifestHead, error) {
	s, err := decodeManifest(id, data)
	if err != nil {
		return ManifestHead{}, err
	}
	return ManifestHead{ID: id, Host: s.Host, Seq: s.Seq}, nil
}

// MaxObjectSize bounds any object vaultbak reads whole from a region.
const MaxObjectSize = 1 << 30
