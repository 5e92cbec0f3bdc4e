package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
	"golang.org/x/sync/errgroup"

	"vaultbak/crypt"
)

// The audit trail. Every operation appends one record to every region
// (audit/…): who ran it (the signer, and the user and machine it ran as),
// when, what it did and how it ended, and the regions the record was
// written to. Records are signed and hash-chained per signer, like
// manifests, so a deleted, altered or reordered record breaks a chain or a
// signature, and a record missing from a region it names was deleted there.
//
// Signers: a backup host signs with its enrolled key; operations run with
// the recovery identity are signed by an operator key, whose seed is
// sealed in the config to the recovery recipients only. A writer can
// therefore neither read nor forge an operator's records. When the
// recovery recipients change, the operator key is retired (a removed
// identity may have kept the seed: its records after that point are
// rejected) and a new one continues the same chain.
//
// Object names carry the chain and position, so appending needs only a
// listing: audit/<chain tag>-<seq>-<SHA-256 of the record>.

// OperatorSigner is the signer name of records signed by an operator key.
const OperatorSigner = "operator"

// HostSigner is the signer name of records signed by a host.
func HostSigner(host string) string { return "host " + host }

const (
	auditFormat    = "vaultbak-audit"
	maxAuditRecord = 64 << 10
	auditPrefix    = "audit/"
)

// AuditRecord is one operation.
type AuditRecord struct {
	Version    int       `json:"version"`
	Repository string    `json:"repository"`
	Signer     string    `json:"signer"` // HostSigner(name) or OperatorSigner
	Seq        uint64    `json:"seq"`    // chain position, 1 for a signer's first record
	Prev       string    `json:"prev,omitempty"`
	Time       time.Time `json:"time"`
	User       string    `json:"user,omitempty"`    // the account it ran as
	Machine    string    `json:"machine,omitempty"` // the machine it ran on
	Op         string    `json:"op"`                // "backup", "restore", "key add-recovery", …
	Target     string    `json:"target,omitempty"`  // a snapshot or host it acted on; never a path
	Result     string    `json:"result"`            // "ok", "warnings", "failed", "integrity", "interrupted", …
	Exit       int       `json:"exit"`
	Regions    []string  `json:"regions"` // where the record was written
	// PrevIn holds, for each region whose listing answered, the newest
	// position of this chain the region held (see Manifest.PrevIn).
	PrevIn map[string]uint64 `json:"prev_in,omitempty"`
}

// AuditEntry is a record read from the repository.
type AuditEntry struct {
	ID string // SHA-256 of the record
	AuditRecord
	Key    crypt.PublicKey // the key that signed it
	Name   string          // object name
	Region string          // the region it was read from
	In     []string        // the regions whose listing held it
}

// AuditPos is a position in a signer's chain.
type AuditPos struct {
	Seq uint64 `json:"seq"`
	ID  string `json:"id"`
}

// AuditMark is the newest record a machine appended to a chain, and how
// much of the chain each region held then: the record's position in the
// regions it names, its PrevIn elsewhere. It tells a region that lost
// records it held from one that did not answer when they were written.
type AuditMark struct {
	AuditPos
	Held map[string]uint64 `json:"held,omitempty"` // none in marks of earlier versions
}

type signedAudit struct {
	Format string          `json:"format"`
	Record json.RawMessage `json:"record"`
	Signer crypt.PublicKey `json:"signer"`
	Sig    []byte          `json:"sig"`
}

// AuditChain returns the tag that names signer's chain in object names.
func AuditChain(signer string) string {
	sum := sha256.Sum256([]byte("vaultbak audit chain\n" + signer))
	return hex.EncodeToString(sum[:8])
}

func auditName(signer string, seq uint64, id string) string {
	return fmt.Sprintf("%s%s-%012d-%s", auditPrefix, AuditChain(signer), seq, id)
}

func parseAuditName(name string) (chain string, seq uint64, id string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(name, auditPrefix), "-")
	if len(parts) != 3 || len(parts[0]) != 16 || len(parts[2]) != 64 || !strings.HasPrefix(name, auditPrefix) {
		return "", 0, "", false
	}
	seq, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil || seq == 0 {
		return "", 0, "", false
	}
	if _, err := hex.DecodeString(parts[0] + parts[2]); err != nil {
		return "", 0, "", false
	}
	return parts[0], seq, parts[2], true
}

func auditSignedBytes(raw []byte) []byte {
	return append([]byte("vaultbak audit v1\n"), raw...)
}

func signAudit(rec *AuditRecord, key crypt.SigningKey) (name string, data []byte, err error) {
	raw, err := json.Marshal(rec)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(raw)
	data, err = json.Marshal(signedAudit{Format: auditFormat, Record: raw, Signer: key.Public(), Sig: key.Sign(auditSignedBytes(raw))})
	return auditName(rec.Signer, rec.Seq, hex.EncodeToString(sum[:])), data, err
}

// decodeAudit parses the stored record called name and checks that the
// name matches its content and that the signature is valid for the key it
// names. Whether that key may sign for the signer is verifyAuditSigner's.
func decodeAudit(name string, data []byte) (*AuditEntry, error) {
	chain, seq, id, ok := parseAuditName(name)
	if !ok {
		return nil, fmt.Errorf("unexpected audit object name")
	}
	var sa signedAudit
	if err := json.Unmarshal(data, &sa); err != nil {
		return nil, fmt.Errorf("malformed audit record: %w", err)
	}
	if sa.Format != auditFormat {
		return nil, fmt.Errorf("malformed audit record: format %q", sa.Format)
	}
	sum := sha256.Sum256(sa.Record)
	if hex.EncodeToString(sum[:]) != id {
		return nil, fmt.Errorf("content does not match its name")
	}
	if err := sa.Signer.Verify(auditSignedBytes(sa.Record), sa.Sig); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	e := &AuditEntry{ID: id, Key: sa.Signer, Name: name}
	if err := json.Unmarshal(sa.Record, &e.AuditRecord); err != nil {
		return nil, fmt.Errorf("malformed audit record: %w", err)
	}
	if e.Version != FormatVersion {
		return nil, fmt.Errorf("audit record version %d is not supported", e.Version)
	}
	if AuditChain(e.Signer) != chain || e.Seq != seq {
		return nil, fmt.Errorf("its name does not match the signer and position it holds")
	}
	return e, nil
}

// verifyAuditSigner checks that the record belongs to this repository and
// that its key may sign for its signer at its position.
func (r *Repository) verifyAuditSigner(e *AuditEntry) error {
	if e.Repository != r.cfg.ID {
		return fmt.Errorf("belongs to repository %s, not this one (%s)", e.Repository, r.cfg.ID)
	}
	if e.Signer == OperatorSigner {
		for _, op := range r.cfg.Operators {
			if op.SigningKey != e.Key {
				continue
			}
			if op.Retired != nil && e.Seq > op.RetiredAfter {
				return fmt.Errorf("signed by an operator key after it was retired on %s (the recovery recipients changed)", op.Retired.Format(time.RFC3339))
			}
			return nil
		}
		return errors.New("signed by an operator key that is not enrolled")
	}
	name, ok := strings.CutPrefix(e.Signer, "host ")
	if !ok {
		return fmt.Errorf("unknown signer %q", e.Signer)
	}
	h, ok := r.cfg.Host(name)
	if !ok {
		return fmt.Errorf("signed as host %q, which is not enrolled", name)
	}
	if h.SigningKey != e.Key {
		return fmt.Errorf("signed by a key that is not the one enrolled for host %q", name)
	}
	if h.Revoked != nil && e.Seq > h.AuditRevokedAfter {
		return fmt.Errorf("signed by host %q after its revocation on %s", name, h.Revoked.Format(time.RFC3339))
	}
	return nil
}

// auditChain returns the newest position of signer's chain among the
// regions' listings (object names carry it), and for each region that
// answered the newest position it holds (AuditRecord.PrevIn).
func (r *Repository) auditChain(ctx context.Context, signer string) (AuditPos, map[string]uint64, error) {
	names, perRegion, err := r.listPerRegion(ctx, auditPrefix)
	if err != nil {
		return AuditPos{}, nil, fmt.Errorf("repo: %w", err)
	}
	var head AuditPos
	prevIn := map[string]uint64{}
	for reg := range perRegion {
		prevIn[reg] = 0
	}
	for name := range names {
		chain, seq, id, ok := parseAuditName(name)
		if !ok || chain != AuditChain(signer) {
			continue
		}
		if seq > head.Seq {
			head = AuditPos{Seq: seq, ID: id}
		}
		for reg, have := range perRegion {
			if have[name] && seq > prevIn[reg] {
				prevIn[reg] = seq
			}
		}
	}
	return head, prevIn, nil
}

// AuditSigner says who signs this repository handle's records: the
// operator when it holds the recovery identity, else its host, else ""
// (a keyless handle cannot append to the trail).
func (r *Repository) AuditSigner() string {
	switch {
	case r.CanRead() && r.secrets != nil:
		return OperatorSigner
	case r.keys.Host != nil && r.secrets != nil:
		return HostSigner(r.keys.Host.Host)
	}
	return ""
}

// AppendAudit signs rec as AuditSigner and writes it to every region that
// answers, continuing the chain after the newest position among the
// listings and after (this machine's memory of the chain, so a chain
// rolled back in every region leaves a visible gap). It returns the
// record's mark. When some regions fail, the record is signed again
// naming only the regions that hold it.
func (r *Repository) AppendAudit(ctx context.Context, rec AuditRecord, after AuditMark) (AuditMark, error) {
	rec.Signer = r.AuditSigner()
	var key crypt.SigningKey
	switch {
	case rec.Signer == "":
		return AuditMark{}, ErrNeedHostKey
	case rec.Signer == OperatorSigner:
		k, err := r.operatorKey(ctx)
		if err != nil {
			return AuditMark{}, err
		}
		key = k
	default:
		key = r.keys.Host.Signing
	}
	head, prevIn, err := r.auditChain(ctx, rec.Signer)
	if err != nil {
		return AuditMark{}, err
	}
	rec.PrevIn = prevIn
	if after.Seq > head.Seq {
		// This machine wrote records no region lists any more.
		head = after.AuditPos
		if after.Held == nil {
			// A mark of an earlier version does not say where they were
			// written: claim every region held them, so the hole shows
			// wherever it is read.
			for reg := range rec.PrevIn {
				rec.PrevIn[reg] = after.Seq
			}
		}
	}
	// Each region held at least what the mark says, answering now or not,
	// so that a hole shows where records were lost and not where they were
	// never written (a region that did not answer then).
	rec.PrevIn = raiseHeld(rec.PrevIn, after.Held, head.Seq)
	rec.Version, rec.Repository = FormatVersion, r.cfg.ID
	rec.Seq, rec.Prev = head.Seq+1, head.ID
	rec.Time = rec.Time.UTC()
	down := r.Down()
	var targets []*Region
	for _, reg := range r.regions {
		if _, isDown := down[reg.Name]; !isDown {
			targets = append(targets, reg)
		}
	}
	for len(targets) > 0 {
		rec.Regions = rec.Regions[:0]
		for _, reg := range targets {
			rec.Regions = append(rec.Regions, reg.Name)
		}
		name, data, err := signAudit(&rec, key)
		if err != nil {
			return AuditMark{}, fmt.Errorf("repo: audit record: %w", err)
		}
		var ok []*Region
		var errs []error
		for i, err := range putEach(ctx, targets, name, data) {
			if err == nil {
				ok = append(ok, targets[i])
			} else {
				errs = append(errs, &RegionError{targets[i].Name, fmt.Errorf("write %s: %w", name, err)})
			}
		}
		if len(errs) == 0 {
			_, seq, id, _ := parseAuditName(name)
			return AuditMark{AuditPos{Seq: seq, ID: id}, Held(rec.PrevIn, rec.Regions, seq)}, nil
		}
		// Take the record back from the regions that took it and sign it
		// again naming only them, so no region is named that lacks it.
		for _, reg := range ok {
			reg.Backend.Delete(ctx, name)
		}
		if len(ok) == 0 || ctx.Err() != nil {
			return AuditMark{}, fmt.Errorf("repo: write audit record: %w", errors.Join(errs...))
		}
		targets = ok
	}
	return AuditMark{}, errors.New("repo: write audit record: no region answers")
}

// operatorKey opens the current operator key, creating one (a config
// change) in a repository that has none yet.
func (r *Repository) operatorKey(ctx context.Context) (crypt.SigningKey, error) {
	if !r.CanRead() || r.secrets == nil {
		return crypt.SigningKey{}, ErrNeedRecovery
	}
	if op := r.currentOperator(); op != nil {
		seed, err := crypt.Open(op.Seed, 1024, r.keys.Recovery)
		if err != nil {
			return crypt.SigningKey{}, &IntegrityError{Object: "config", Reason: "the operator key does not open with the recovery identity: " + err.Error()}
		}
		return crypt.SigningKeyFromSeed(seed)
	}
	key, entry, err := newOperator(r.recovery, time.Now())
	if err != nil {
		return crypt.SigningKey{}, err
	}
	cfg := r.cloneConfig()
	cfg.Operators = append(cfg.Operators, entry)
	cfg.Serial++
	data, err := encodeConfig(cfg, r.secrets)
	if err != nil {
		return crypt.SigningKey{}, err
	}
	if err := putAll(ctx, r.regions, "config", data); err != nil {
		return crypt.SigningKey{}, fmt.Errorf("repo: enrol the operator key: %w", err)
	}
	r.cfg = cfg
	return key, nil
}

func (r *Repository) currentOperator() *OperatorEntry {
	if n := len(r.cfg.Operators); n > 0 && r.cfg.Operators[n-1].Retired == nil {
		return &r.cfg.Operators[n-1]
	}
	return nil
}

// newOperator makes an operator key sealed to the recovery recipients.
func newOperator(recovery []age.Recipient, now time.Time) (crypt.SigningKey, OperatorEntry, error) {
	key := crypt.GenerateSigningKey()
	sealed, err := crypt.Seal(key.Seed(), recovery)
	if err != nil {
		return crypt.SigningKey{}, OperatorEntry{}, fmt.Errorf("repo: seal the operator key: %w", err)
	}
	return key, OperatorEntry{SigningKey: key.Public(), Seed: sealed, Created: now.UTC()}, nil
}

// AuditTrail reads and verifies every audit record (the union over all
// regions), oldest first. It fails with integrity errors for a record
// that is altered, signed by a key not allowed to sign it, missing from a
// region it names, or that breaks its signer's chain.
func (r *Repository) AuditTrail(ctx context.Context) ([]*AuditEntry, error) {
	names, perRegion, err := r.listPerRegion(ctx, auditPrefix)
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	sorted := sortedKeys(names)
	entries := make([]*AuditEntry, len(sorted))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, name := range sorted {
		g.Go(func() error {
			_, region, err := r.readObject(gctx, name, maxAuditRecord, func(region string, data []byte) error {
				e, err := decodeAudit(name, data)
				if err == nil {
					err = r.verifyAuditSigner(e)
				}
				if err != nil {
					return &IntegrityError{Region: region, Object: name, Reason: err.Error()}
				}
				entries[i] = e
				return nil
			})
			if err != nil {
				return fmt.Errorf("repo: %w", err)
			}
			entries[i].Region = region
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var errs []error
	answered := map[string]bool{}
	for reg := range perRegion {
		answered[reg] = true
	}
	bySigner := map[string][]chainLink{}
	for _, e := range entries {
		for _, reg := range r.regions {
			if perRegion[reg.Name][e.Name] {
				e.In = append(e.In, reg.Name)
			}
		}
		for _, reg := range e.Regions {
			if have, answered := perRegion[reg]; answered && !have[e.Name] {
				errs = append(errs, &IntegrityError{Region: reg, Object: e.Name, Reason: fmt.Sprintf("audit record #%d of %s is missing, though it was written there (the record names the region): deleted", e.Seq, e.Signer)})
			}
		}
		bySigner[e.Signer] = append(bySigner[e.Signer], chainLink{id: e.ID, prev: e.Prev, seq: e.Seq, holeOK: holeBefore(e.PrevIn, answered)})
	}
	signers := make([]string, 0, len(bySigner))
	for s := range bySigner {
		signers = append(signers, s)
	}
	sort.Strings(signers)
	for _, s := range signers {
		if at, reason := chainBreak(bySigner[s], "audit record"); reason != "" {
			errs = append(errs, &IntegrityError{Object: "audit record " + ShortID(at), Reason: fmt.Sprintf("%s: %s", s, reason)})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.SliceStable(entries, func(i, j int) bool {
		if !entries[i].Time.Equal(entries[j].Time) {
			return entries[i].Time.Before(entries[j].Time)
		}
		return entries[i].Signer < entries[j].Signer || entries[i].Signer == entries[j].Signer && entries[i].Seq < entries[j].Seq
	})
	return entries, nil
}

// AuditHead returns the newest position of signer's chain among entries.
func AuditHead(entries []*AuditEntry, signer string) AuditPos {
	var p AuditPos
	for _, e := range entries {
		if e.Signer == signer && e.Seq > p.Seq {
			p = AuditPos{Seq: e.Seq, ID: e.ID}
		}
	}
	return p
}

// chainLink is one element of a hash chain: manifests of a host, audit
// records of a signer.
type chainLink struct {
	id, prev string
	seq      uint64
	// holeOK, if set, says whether the elements from a to b before this
	// one may be missing (they were never written where the chain was
	// read from).
	holeOK func(a, b uint64) bool
}

// chainBreak finds the first break in a chain: positions 1…n with no gap
// or repeat, each element naming its predecessor. It returns the element
// where the chain breaks and why, or "" when the chain is whole. noun names
// the elements ("snapshot").
func chainBreak(links []chainLink, noun string) (at, reason string) {
	sort.SliceStable(links, func(i, j int) bool { return links[i].seq < links[j].seq })
	next, prevID := uint64(1), ""
	for i, l := range links {
		switch {
		case l.seq == 0:
			return l.id, fmt.Sprintf("%s at position 0", noun)
		case l.seq < next:
			return l.id, fmt.Sprintf("the chain forks: two %ss #%d (%s and %s)", noun, l.seq, ShortID(links[i-1].id), ShortID(l.id))
		case l.seq > next && (l.holeOK == nil || !l.holeOK(next, l.seq-1)):
			gap := fmt.Sprintf("%s #%d (%s, named by #%d) is missing", noun, l.seq-1, ShortID(l.prev), l.seq)
			if next < l.seq-1 {
				gap = fmt.Sprintf("%ss #%d to #%d are missing", noun, next, l.seq-1)
			}
			return l.id, fmt.Sprintf("the chain is broken: %s: deleted or withheld", gap)
		case l.seq > next:
			// A hole where the chain was read from that its next element
			// explains: the link across it cannot be checked here.
		case l.seq == 1 && l.prev != "":
			return l.id, fmt.Sprintf("first %s names a predecessor", noun)
		case i > 0 && l.prev != prevID:
			return l.id, fmt.Sprintf("%s #%d does not follow #%d (%s)", noun, l.seq, links[i-1].seq, ShortID(prevID))
		}
		next, prevID = l.seq+1, l.id
	}
	return "", ""
}
