package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"vaultbak/repo"
)

// auditedOps are the commands that append a record to the audit trail
// when they ran against a repository: everything that writes, reads
// history or verifies. Listings of public facts (snapshots, replicate
// status, audit itself) are not recorded.
var auditedOps = map[string]bool{
	"init": true, "backup": true, "restore": true, "dump": true, "ls": true,
	"check": true, "replicate sync": true, "drill": true,
	"host enroll": true, "host revoke": true,
	"key add-recovery": true, "key remove-recovery": true,
}

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit [verify]",
		Short: "Show or verify the signed audit trail",
		Long: `Every operation (init, backup, restore, dump, ls, check, replicate sync,
drill, key and host changes) appends a signed, hash-chained record to every
region: who ran it (the host, or the operator holding the recovery
identity, with the account and machine), when, what it acted on and how it
ended.

'audit' lists the records, verified. 'audit verify' checks every
signature, every signer's chain, that each record is in every region it
names, and that no chain this machine wrote to has gone backwards; any
deleted, altered or reordered record exits 4. Neither needs a key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAudit(cmd.Context(), g, false)
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify",
		Short: "Verify the audit trail; exit 4 on any deleted, altered or reordered record",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAudit(cmd.Context(), g, true)
		},
	})
	return cmd
}

func runAudit(ctx context.Context, g *globals, verifyOnly bool) error {
	s, err := g.open(ctx, needNone)
	if err != nil {
		return err
	}
	entries, err := s.auditTrail(ctx)
	if err != nil {
		return err
	}
	if verifyOnly {
		signers := map[string]bool{}
		for _, e := range entries {
			signers[e.Signer] = true
		}
		if g.json {
			g.out.emit(map[string]any{"type": "summary", "records": len(entries), "signers": len(signers), "problems": 0})
		} else {
			g.out.textf("audit trail verified: %d record(s) from %d signer(s) in %d region(s)\n", len(entries), len(signers), len(s.repo.Regions()))
		}
		return nil
	}
	for _, e := range entries {
		if g.json {
			g.out.emit(map[string]any{"type": "record", "id": e.ID, "time": e.Time, "signer": e.Signer, "seq": e.Seq, "user": e.User, "machine": e.Machine, "op": e.Op, "target": e.Target, "result": e.Result, "exit": e.Exit, "regions": e.Regions})
			continue
		}
		target := e.Target
		switch {
		case target == "":
			target = "-"
		case len(target) == 64:
			target = repo.ShortID(target)
		}
		g.out.textf("%s  %-22s  %-20s  %-20s  %-10s  %-12s  %s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Signer+" #"+fmt.Sprint(e.Seq), e.User+"@"+e.Machine, e.Op, target, e.Result, strings.Join(e.Regions, ","))
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "records": len(entries)})
	}
	return nil
}

// auditTrail reads and verifies the trail, and compares each chain with
// the newest record this machine wrote to it: a trail rolled back in every
// region at once is caught here, as it cannot be by the regions alone.
func (s *session) auditTrail(ctx context.Context) ([]*repo.AuditEntry, error) {
	entries, err := s.repo.AuditTrail(ctx)
	if err != nil {
		return nil, err
	}
	base, err := stateBase(s.cfg)
	if err != nil {
		return entries, nil
	}
	files, _ := filepath.Glob(filepath.Join(base, s.repo.Config().ID, "audit-*.json"))
	var errs []error
	for _, f := range files {
		hw, err := readAuditHighWater(f)
		if err != nil || hw.Seq == 0 {
			continue
		}
		head := repo.AuditHead(entries, hw.Signer)
		if hw.Held != nil {
			now := map[string]uint64{} // each region's newest record of the chain
			for _, e := range entries {
				if e.Signer == hw.Signer {
					for _, reg := range e.In {
						now[reg] = max(now[reg], e.Seq)
					}
				}
			}
			if reg, held := lostHeld(hw.Held, now, answering(s.repo)); reg != "" {
				errs = append(errs, &repo.IntegrityError{Region: reg, Object: "audit trail", Reason: fmt.Sprintf("%s: the region's newest record is #%d, but it held #%d when this machine wrote #%d (%s): records were deleted or the region was rolled back", hw.Signer, now[reg], held, hw.Seq, repo.ShortID(hw.ID))})
				continue
			}
		}
		switch {
		case head.Seq < hw.Seq && hw.Held != nil:
			// Every region that answered holds what it held; those that
			// hold the newest record did not answer.
			s.out.warn("audit trail", fmt.Errorf("%s: the newest record this machine wrote, #%d (%s), is in region(s) %s, which did not answer", hw.Signer, hw.Seq, repo.ShortID(hw.ID), strings.Join(holding(hw.Held, hw.Seq), ", ")))
		case head.Seq < hw.Seq:
			errs = append(errs, &repo.IntegrityError{Object: "audit trail", Reason: fmt.Sprintf("%s: the newest record is #%d, but this machine wrote #%d (%s): records were deleted or the trail was rolled back", hw.Signer, head.Seq, hw.Seq, repo.ShortID(hw.ID))})
		case head.Seq == hw.Seq && head.ID != hw.ID:
			errs = append(errs, &repo.IntegrityError{Object: "audit trail", Reason: fmt.Sprintf("%s: record #%d is %s in the repository, but this machine wrote %s", hw.Signer, hw.Seq, repo.ShortID(head.ID), repo.ShortID(hw.ID))})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return entries, nil
}

// auditHighWater is the newest record this machine appended to a chain.
type auditHighWater struct {
	Signer string `json:"signer"`
	repo.AuditMark
}

func auditHighWaterFile(base, repoID, signer string) string {
	return filepath.Join(base, repoID, "audit-"+repo.AuditChain(signer)+".json")
}

func readAuditHighWater(path string) (auditHighWater, error) {
	var hw auditHighWater
	_, err := readStateFile(path, &hw)
	return hw, err
}

// recordAudit appends the record of the command that just ran, when it is
// audited and opened a repository. A trail that cannot be written is a
// warning: it never changes the command's exit code.
func (g *globals) recordAudit(ctx context.Context, cmd *cobra.Command, code int) {
	op := strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
	if !auditedOps[op] {
		return
	}
	s := g.auditSession
	if s == nil && op == "replicate sync" && code != exitUsage {
		// Sync needs no key; the record is signed with whatever this
		// machine holds.
		var err error
		if s, err = g.open(ctx, needNone); err != nil {
			return
		}
	}
	if s == nil || s.repo.AuditSigner() == "" {
		return // no repository, or no key to sign with
	}
	if err := appendAudit(ctx, s, op, g.auditTarget, code); err != nil {
		g.out.warn("audit", fmt.Errorf("record not written: %w", err))
	}
}

func appendAudit(ctx context.Context, s *session, op, target string, code int) error {
	rec := repo.AuditRecord{Time: time.Now(), Op: op, Target: target, Result: resultName(code), Exit: code}
	if u, err := user.Current(); err == nil {
		rec.User = u.Username
	}
	rec.Machine, _ = os.Hostname()
	signer := s.repo.AuditSigner()
	var hwPath string
	if base, err := stateBase(s.cfg); err == nil {
		dir := filepath.Join(base, s.repo.Config().ID)
		if err := os.MkdirAll(dir, 0o700); err == nil {
			hwPath = auditHighWaterFile(base, s.repo.Config().ID, signer)
			// One appender per chain on this machine at a time, so two
			// commands never fork it.
			if f, err := os.OpenFile(filepath.Join(dir, "audit.lock"), os.O_CREATE|os.O_RDWR, 0o600); err == nil {
				defer f.Close()
				unix.Flock(int(f.Fd()), unix.LOCK_EX)
			}
		}
	}
	var after repo.AuditMark
	if hwPath != "" {
		if hw, err := readAuditHighWater(hwPath); err == nil && hw.Signer == signer {
			after = hw.AuditMark
		}
	}
	pos, err := s.repo.AppendAudit(ctx, rec, after)
	if err != nil {
		return err
	}
	if hwPath == "" {
		return nil
	}
	data, _ := json.Marshal(auditHighWater{Signer: signer, AuditMark: pos})
	return renameio.WriteFile(hwPath, data, 0o600)
}

// resultName is how the trail names an exit code.
func resultName(code int) string {
	switch code {
	case exitOK:
		return "ok"
	case exitUsage:
		return "usage"
	case exitWarnings:
		return "warnings"
	case exitIntegrity:
		return "integrity"
	case exitObjectives:
		return "objectives"
	case exitInterrupted:
		return "interrupted"
	}
	return "failed"
}
