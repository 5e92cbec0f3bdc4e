package repo

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"vaultbak/backend/faulty"
	"vaultbak/crypt"
)

// auditEnv is a repository with a short audit trail: two host records and
// one operator record.
func auditEnv(t *testing.T) (*env, []string) {
	t.Helper()
	e := newEnv(t, 2, crypt.KindX25519)
	ctx := context.Background()
	host := e.open(e.keysHost())
	for _, op := range []string{"init", "backup"} {
		if _, err := host.AppendAudit(ctx, AuditRecord{Time: testTime, Op: op, Result: "ok"}, AuditMark{}); err != nil {
			t.Fatal(err)
		}
	}
	rec := e.open(e.keysRecovery())
	if _, err := rec.AppendAudit(ctx, AuditRecord{Time: testTime.Add(time.Minute), Op: "restore", Result: "ok"}, AuditMark{}); err != nil {
		t.Fatal(err)
	}
	return e, e.names(0, "audit/")
}

func TestAuditTrail(t *testing.T) {
	e, names := auditEnv(t)
	if len(names) != 3 || len(e.names(1, "audit/")) != 3 {
		t.Fatalf("records: %v", names)
	}
	entries, err := e.open(Keys{}).AuditTrail(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range entries {
		got = append(got, x.Signer+" "+x.Op)
		if strings.Join(x.Regions, ",") != "r1,r2" {
			t.Errorf("%s names regions %v", x.Name, x.Regions)
		}
	}
	if want := "host host-a init|host host-a backup|operator restore"; strings.Join(got, "|") != want {
		t.Fatalf("trail %q, want %q", strings.Join(got, "|"), want)
	}
	if h := AuditHead(entries, HostSigner("host-a")); h.Seq != 2 {
		t.Fatalf("host head %+v", h)
	}
}

// TestAuditTamper edits the stored trail directly; every edit is an
// integrity failure of AuditTrail, without any key.
func TestAuditTamper(t *testing.T) {
	ctx := context.Background()
	other := newEnv(t, 1, crypt.KindX25519)
	rogue := crypt.GenerateSigningKey()
	cases := []struct {
		name   string
		tamper func(e *env, names []string)
		want   string
	}{
		{"flipped byte", func(e *env, names []string) {
			for i := range e.mems {
				data, _ := e.mems[i].Raw(names[0])
				data[len(data)/2] ^= 1
				e.mems[i].SetRaw(names[0], data)
			}
		}, "audit/"},
		{"deleted in every region", func(e *env, names []string) {
			for i := range e.mems {
				e.mems[i].Delete(ctx, names[0])
			}
		}, "the chain is broken"},
		{"deleted in one region", func(e *env, names []string) {
			e.mems[1].Delete(ctx, names[1])
		}, "region r2"},
		{"renamed to another position", func(e *env, names []string) {
			data, _ := e.mems[0].Raw(names[1])
			bad := strings.Replace(names[1], "-000000000002-", "-000000000003-", 1)
			for i := range e.mems {
				e.mems[i].Delete(ctx, names[1])
				e.mems[i].SetRaw(bad, data)
			}
		}, "does not match"},
		{"signed by an unenrolled key", func(e *env, names []string) {
			rec := AuditRecord{Version: FormatVersion, Repository: e.repo.cfg.ID, Signer: HostSigner("host-a"), Seq: 3, Time: testTime, Op: "backup", Result: "ok", Regions: []string{"r1"}}
			name, data, _ := signAudit(&rec, rogue)
			e.mems[0].SetRaw(name, data)
		}, "not the one enrolled"},
		{"an operator record signed by a host key", func(e *env, names []string) {
			rec := AuditRecord{Version: FormatVersion, Repository: e.repo.cfg.ID, Signer: OperatorSigner, Seq: 2, Time: testTime, Op: "restore", Result: "ok", Regions: []string{"r1"}}
			name, data, _ := signAudit(&rec, e.host.Signing)
			e.mems[0].SetRaw(name, data)
		}, "operator key that is not enrolled"},
		{"copied from another repository", func(e *env, names []string) {
			host := other.open(other.keysHost())
			if _, err := host.AppendAudit(ctx, AuditRecord{Time: testTime, Op: "backup", Result: "ok"}, AuditMark{}); err != nil {
				t.Fatal(err)
			}
			for _, n := range other.names(0, "audit/") {
				data, _ := other.mems[0].Raw(n)
				e.mems[0].SetRaw(n, data)
			}
		}, "belongs to repository"},
		{"reordered", func(e *env, names []string) {
			// Record #2 re-signed by the host itself to follow nothing:
			// a second #1 forks the chain.
			rec := AuditRecord{Version: FormatVersion, Repository: e.repo.cfg.ID, Signer: HostSigner("host-a"), Seq: 1, Time: testTime, Op: "backup", Result: "ok", Regions: []string{"r1", "r2"}}
			name, data, _ := signAudit(&rec, e.host.Signing)
			for i := range e.mems {
				e.mems[i].Delete(ctx, names[1])
				e.mems[i].SetRaw(name, data)
			}
		}, "forks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, names := auditEnv(t)
			// names sort by chain tag then position: find the host's.
			var hostNames []string
			for _, n := range names {
				if strings.HasPrefix(n, "audit/"+AuditChain(HostSigner("host-a"))) {
					hostNames = append(hostNames, n)
				}
			}
			c.tamper(e, hostNames)
			_, err := e.open(Keys{}).AuditTrail(ctx)
			if !errors.Is(err, ErrIntegrity) {
				t.Fatalf("err = %v, want an integrity failure", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestAuditAppendContinuesAfterRollback(t *testing.T) {
	e, names := auditEnv(t)
	ctx := context.Background()
	// The newest host record is gone from every region; the host remembers
	// it, so its next record leaves the gap visible to everyone.
	var last AuditMark
	for _, n := range names {
		if _, seq, id, _ := parseAuditName(n); strings.HasPrefix(n, "audit/"+AuditChain(HostSigner("host-a"))) && seq > last.Seq {
			last = AuditMark{AuditPos: AuditPos{Seq: seq, ID: id}}
			defer func(n string) {
				for i := range e.mems {
					e.mems[i].Delete(ctx, n)
				}
			}(n)
		}
	}
	for i := range e.mems {
		e.mems[i].Delete(ctx, auditName(HostSigner("host-a"), last.Seq, last.ID))
	}
	pos, err := e.open(e.keysHost()).AppendAudit(ctx, AuditRecord{Time: testTime, Op: "check", Result: "ok"}, last)
	if err != nil {
		t.Fatal(err)
	}
	if pos.Seq != last.Seq+1 {
		t.Fatalf("appended at #%d, want #%d", pos.Seq, last.Seq+1)
	}
	if _, err := e.open(Keys{}).AuditTrail(ctx); err == nil || !strings.Contains(err.Error(), "is missing") {
		t.Fatalf("err = %v, want the gap reported", err)
	}
}

func TestAuditRegionDownNamesOnlyWrittenRegions(t *testing.T) {
	e := newEnv(t, 2, crypt.KindX25519)
	ctx := context.Background()
	f := faulty.New(e.regions[1].Backend)
	f.AddFault(faulty.OpPut, "audit/", errors.New("connection refused"), 1)
	regions := []*Region{e.regions[0], {Name: "r2", Backend: f}}
	r, err := Open(ctx, regions, e.keysHost())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.AppendAudit(ctx, AuditRecord{Time: testTime, Op: "backup", Result: "warnings"}, AuditMark{}); err != nil {
		t.Fatal(err)
	}
	f.VerifyAllFired(t)
	if n := len(e.names(0, "audit/")); n != 1 {
		t.Fatalf("region r1 holds %d records, want the one re-signed", n)
	}
	entries, err := e.open(Keys{}).AuditTrail(ctx)
	if err != nil {
		t.Fatalf("a record that skipped a down region is lag, not damage: %v", err)
	}
	if len(entries) != 1 || strings.Join(entries[0].Regions, ",") != "r1" {
		t.Fatalf("entries %+v", entries)
	}
	// The next record goes to both; region r2 read alone lacks #1, which
	// it never held: not a broken chain.
	if _, err := e.open(e.keysHost()).AppendAudit(ctx, AuditRecord{Time: testTime, Op: "backup", Result: "ok"}, AuditMark{}); err != nil {
		t.Fatal(err)
	}
	alone, err := Open(ctx, e.regions[1:], Keys{})
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Close()
	if entries, err := alone.AuditTrail(ctx); err != nil || len(entries) != 1 {
		t.Fatalf("region r2 alone: %d records, %v", len(entries), err)
	}
}

func TestAuditRevokedHostAndRetiredOperator(t *testing.T) {
	e, _ := auditEnv(t)
	ctx := context.Background()
	rec := e.open(e.keysAll())
	second, err := rec.EnrollHost(ctx, "host-b", testTime)
	if err != nil {
		t.Fatal(err)
	}
	b := e.open(Keys{Host: second})
	if _, err := b.AppendAudit(ctx, AuditRecord{Time: testTime, Op: "backup", Result: "ok"}, AuditMark{}); err != nil {
		t.Fatal(err)
	}
	if err := e.open(e.keysAll()).RevokeHost(ctx, "host-b", testTime.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.open(Keys{}).AuditTrail(ctx); err != nil {
		t.Fatalf("records from before the revocation stay valid: %v", err)
	}
	// host-b's key signs one more record after its revocation.
	forged := AuditRecord{Version: FormatVersion, Repository: e.repo.cfg.ID, Signer: HostSigner("host-b"), Seq: 2, Time: testTime, Op: "backup", Result: "ok", Regions: []string{"r1"}}
	name, data, _ := signAudit(&forged, second.Signing)
	e.mems[0].SetRaw(name, data)
	if _, err := e.open(Keys{}).AuditTrail(ctx); err == nil || !strings.Contains(err.Error(), "after its revocation") {
		t.Fatalf("err = %v, want the record after revocation rejected", err)
	}
	e.mems[0].Delete(ctx, name)

	// Rotating the recovery recipients retires the operator key.
	oldOp := rec.Config().Operators[len(rec.Config().Operators)-1]
	seed, err := crypt.Open(oldOp.Seed, 1024, e.keysRecovery().Recovery)
	if err != nil {
		t.Fatal(err)
	}
	oldKey, _ := crypt.SigningKeyFromSeed(seed)
	_, newRec, _ := crypt.GenerateIdentity(crypt.KindX25519)
	r := e.open(e.keysRecovery())
	if err := r.SetRecovery(ctx, append(r.Config().Recovery, newRec), nil); err != nil {
		t.Fatal(err)
	}
	ops := r.Config().Operators
	if len(ops) != 2 || ops[0].Retired == nil || ops[0].RetiredAfter != 1 || ops[0].Seed != nil || ops[1].Retired != nil {
		raw, _ := json.Marshal(ops)
		t.Fatalf("operators after rotation: %s", raw)
	}
	if _, err := r.AppendAudit(ctx, AuditRecord{Time: testTime, Op: "key add-recovery", Result: "ok"}, AuditMark{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.open(Keys{}).AuditTrail(ctx); err != nil {
		t.Fatalf("the new operator key continues the chain: %v", err)
	}
	forged = AuditRecord{Version: FormatVersion, Repository: e.repo.cfg.ID, Signer: OperatorSigner, Seq: 3, Time: testTime, Op: "restore", Result: "ok", Regions: []string{"r1"}}
	name, data, _ = signAudit(&forged, oldKey)
	e.mems[0].SetRaw(name, data)
	if _, err := e.open(Keys{}).AuditTrail(ctx); err == nil || !strings.Contains(err.Error(), "retired") {
		t.Fatalf("err = %v, want the retired operator key rejected", err)
	}
}

func TestVerifyObjectAudit(t *testing.T) {
	e, names := auditEnv(t)
	data, _ := e.mems[0].Raw(names[0])
	if err := VerifyObject(names[0], data); err != nil {
		t.Fatal(err)
	}
	data[10] ^= 1
	if err := VerifyObject(names[0], data); err == nil {
		t.Fatal("a damaged audit record passed VerifyObject")
	}
}

// TestAuditMarkTellsLagFromLoss: a machine's mark says how much of its
// chain each region held. Region r2 missed record #2 (it was down) and is
// now read alone: the next record continues after #2 and says r2 held #1,
// so r2's hole verifies. Had r2 held #2 and lost it, the next record says
// so and the hole is reported.
func TestAuditMarkTellsLagFromLoss(t *testing.T) {
	ctx := context.Background()
	for _, lost := range []bool{false, true} {
		e := newEnv(t, 2, crypt.KindX25519)
		f := faulty.New(e.regions[1].Backend)
		regions := []*Region{e.regions[0], {Name: "r2", Backend: f}}
		r, err := Open(ctx, regions, e.keysHost())
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		mark, err := r.AppendAudit(ctx, AuditRecord{Time: testTime, Op: "backup", Result: "ok"}, AuditMark{})
		if err != nil {
			t.Fatal(err)
		}
		if !lost {
			f.AddFault(faulty.OpPut, "audit/", errors.New("connection refused"), 1)
		}
		if mark, err = r.AppendAudit(ctx, AuditRecord{Time: testTime, Op: "backup", Result: "ok"}, mark); err != nil {
			t.Fatal(err)
		}
		if lost {
			if err := e.regions[1].Backend.Delete(ctx, auditName(HostSigner("host-a"), mark.Seq, mark.ID)); err != nil {
				t.Fatal(err)
			}
		}
		want := map[string]uint64{"r1": 2, "r2": 1}
		if lost {
			want["r2"] = 2
		}
		if !maps.Equal(mark.Held, want) {
			t.Fatalf("lost %v: mark holds %v, want %v", lost, mark.Held, want)
		}

		alone, err := Open(ctx, e.regions[1:], e.keysHost())
		if err != nil {
			t.Fatal(err)
		}
		defer alone.Close()
		next, err := alone.AppendAudit(ctx, AuditRecord{Time: testTime, Op: "check", Result: "ok"}, mark)
		if err != nil || next.Seq != 3 {
			t.Fatalf("lost %v: appended at #%d, %v; want #3", lost, next.Seq, err)
		}
		// r1 did not answer, but the mark says it held #2: the record
		// and the next mark keep that, so r1 losing #2 later shows.
		if next.Held["r1"] != 2 {
			t.Errorf("lost %v: the next mark holds %v, want r1 still at #2", lost, next.Held)
		}
		_, err = alone.AuditTrail(ctx)
		switch {
		case !lost && err != nil:
			t.Errorf("r2 alone, which never held #2: %v", err)
		case lost && (err == nil || !strings.Contains(err.Error(), "is missing")):
			t.Errorf("r2 alone, which lost #2: err = %v, want the hole reported", err)
		}
	}
}
