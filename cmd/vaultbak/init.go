package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vaultbak/backend"
	"vaultbak/chunk"
	"vaultbak/crypt"
	"vaultbak/repo"
)

func newInitCmd(g *globals) *cobra.Command {
	var recipients, recipientFiles []string
	var host, chunkSize, objectLock string
	cmd := &cobra.Command{
		Use:   "init [--recovery-recipient R | --recovery-recipient-file F]...",
		Short: "Create the repository in every region and this host's credential",
		Long: `Create the repository in every configured region. Only the public recovery
recipient is needed. init also creates this host's credential (a writer
identity and a signing key, mode 0600) at --host-key, VAULTBAK_HOST_KEY,
host_key in the config, or host.key beside the config file. With it this
host can back up but never read a backup.

--object-lock governance:30d (or compliance:N d) stores the repository's
history (packs, index files, manifests, audit records) in every S3 region
under Object Lock for that long after each object is written: nobody can
delete or overwrite it until then (in governance mode, only an account
allowed to bypass governance retention). init creates missing buckets with
Object Lock, and refuses an existing bucket created without it. Local
directory regions cannot hold locks; init names them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInit(cmd.Context(), g, recipients, recipientFiles, host, chunkSize, objectLock)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&recipients, "recovery-recipient", nil, "recovery recipient (age1pq1… or age1…), repeatable")
	f.StringArrayVar(&recipientFiles, "recovery-recipient-file", nil, "file of recovery recipients, one per line, or an identity file whose public key to use")
	f.StringVar(&host, "host", "", "this host's name in the repository (default: the hostname)")
	f.StringVar(&chunkSize, "chunk-size", "512K", "average chunk size, a power of two (128K…8M); min and max are 1/8 and 4x")
	f.StringVar(&objectLock, "object-lock", "", "lock the history in S3 regions: governance:DAYSd or compliance:DAYSd")
	return cmd
}

func runInit(ctx context.Context, g *globals, recipients, files []string, host, chunkSize, objectLock string) error {
	cfg, err := loadConfig(g)
	if err != nil {
		return err
	}
	for _, f := range files {
		rs, err := readRecipientFile(f)
		if err != nil {
			return err
		}
		recipients = append(recipients, rs...)
	}
	if len(recipients) == 0 {
		return withHint(usagef("init needs a recovery recipient"), "create one with 'vaultbak keygen --out recovery.key' and pass the printed age1… line with --recovery-recipient")
	}
	if _, _, err := crypt.ParseRecipients(recipients); err != nil {
		return usagef("%v", err)
	}
	if host == "" {
		if host, err = os.Hostname(); err != nil {
			return usagef("no hostname; pass --host")
		}
	}
	params, err := parseChunkSize(chunkSize)
	if err != nil {
		return err
	}
	lock, err := parseObjectLock(objectLock)
	if err != nil {
		return err
	}
	create := createRegions
	if lock != nil {
		create = createLockedRegions
	}
	hk := g.hostKeyFile(cfg)
	if _, err := os.Stat(hk); err == nil {
		return withHint(usagef("host credential %s already exists", hk), "a host credential belongs to one repository; pass another --host-key path")
	}
	if lock != nil && !slices.ContainsFunc(cfg.Regions, regionConfig.isS3) {
		return withHint(usagef("--object-lock: no region of %s can hold locks (local directories cannot)", cfg.path), "add an S3 region to the config, or leave out --object-lock")
	}
	regions, err := cfg.openRegions(ctx, create)
	if err != nil {
		return err
	}
	r, cred, err := repo.Init(ctx, regions, repo.InitOptions{Recovery: recipients, Host: host, Chunker: params, ObjectLock: lock, Now: time.Now()})
	if err != nil {
		if errors.Is(err, backend.ErrNoLock) {
			return withHint(err, "S3 enables Object Lock only when a bucket is created: name a new bucket (init creates it with Object Lock), or leave out --object-lock")
		}
		return err
	}
	s := &session{cfg: cfg, repo: r, out: g.out}
	g.sessions = append(g.sessions, s)
	g.auditSession = s
	if err := crypt.WriteKeyFile(hk, cred.Marshal(time.Now())); err != nil {
		return fmt.Errorf("repository created, but writing the host credential failed: %w", err)
	}
	if g.json {
		names := make([]string, len(regions))
		for i, reg := range regions {
			names[i] = reg.Name
		}
		sum := map[string]any{"type": "summary", "repository": r.Config().ID, "regions": names, "host": host, "host_key": hk}
		if lock != nil {
			sum["object_lock"] = map[string]any{"mode": lock.Mode, "days": lock.Days, "unlocked_regions": r.Unlocked()}
		}
		g.out.emit(sum)
		return nil
	}
	g.out.textf("created repository %s in %d region(s)\n", r.Config().ID, len(regions))
	if lock != nil {
		g.out.textf("Object Lock: %s, %d day(s) from each write, on packs, index files, manifests and audit records\n", lock.Mode, lock.Days)
		if un := r.Unlocked(); un != nil {
			g.out.textf("not locked: region(s) %s (local directories cannot hold locks)\n", strings.Join(un, ", "))
		}
	}
	g.out.textf("host credential for %q written to %s (keep it 0600; it can back up, not restore)\n", host, hk)
	return nil
}

// parseObjectLock parses --object-lock: "governance:30d" or
// "compliance:365d"; "" is no lock.
func parseObjectLock(s string) (*repo.ObjectLock, error) {
	if s == "" {
		return nil, nil
	}
	hint := "write e.g. --object-lock governance:30d or --object-lock compliance:365d"
	mode, period, _ := strings.Cut(s, ":")
	days, ok := strings.CutSuffix(period, "d")
	n, err := strconv.Atoi(days)
	if !ok || err != nil {
		return nil, withHint(usagef("--object-lock %q: want MODE:DAYSd, e.g. governance:30d", s), hint)
	}
	l := &repo.ObjectLock{Mode: mode, Days: n}
	if err := l.Validate(); err != nil {
		return nil, withHint(usagef("--object-lock %q: %v", s, err), hint)
	}
	return l, nil
}

// readRecipientFile reads recipients, one per line; an age identity file's
// "# public key:" comments count as recipients too.
func readRecipientFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("recovery recipient file: %v", err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pk, ok := strings.CutPrefix(line, "# public key:"); ok {
			out = append(out, strings.TrimSpace(pk))
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "AGE-SECRET-KEY") {
			continue
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil, usagef("recovery recipient file %s holds no recipient", path)
	}
	return out, nil
}

func parseChunkSize(s string) (chunk.Params, error) {
	n, err := parseSize(s)
	if err != nil {
		return chunk.Params{}, usagef("--chunk-size: %v", err)
	}
	p := chunk.DefaultParams()
	p.Avg, p.Min, p.Max = int(n), int(n/8), int(n*4)
	if err := p.Validate(); err != nil {
		return chunk.Params{}, usagef("--chunk-size: %v", err)
	}
	return p, nil
}

// parseSize parses "512", "256K", "1M", "2G" (binary units).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for suffix, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30} {
		if strings.HasSuffix(s, suffix) && len(s) > len(suffix) {
			if _, err := fmt.Sscan(s[:len(s)-len(suffix)], new(int64)); err == nil {
				s, mult = s[:len(s)-len(suffix)], m
				break
			}
		}
	}
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
