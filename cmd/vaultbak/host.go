package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"vaultbak/crypt"
)

func newHostCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host list | enroll NAME --out FILE | revoke NAME",
		Short: "List, enrol and revoke the backup hosts of the repository",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the enrolled hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHostList(cmd.Context(), g)
		},
	})
	var out string
	enroll := &cobra.Command{
		Use:   "enroll NAME --out FILE",
		Short: "Enrol a new backup host and write its credential (0600) to FILE",
		Long: `Enrol a new backup host. Run it with the recovery identity or an enrolled
host's credential; the new host's credential (writer identity and signing
key) is written to FILE, mode 0600. Copy FILE to the new host as its
host_key: with it the host backs up (and deduplicates against every other
host) but can never read a backup.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHostEnroll(cmd.Context(), g, args[0], out)
		},
	}
	enroll.Flags().StringVar(&out, "out", "", "file to write the new host's credential to (must not exist)")
	enroll.MarkFlagRequired("out")
	cmd.AddCommand(enroll)
	cmd.AddCommand(&cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a host: its snapshots from now on are rejected, earlier ones stay valid",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHostRevoke(cmd.Context(), g, args[0])
		},
	})
	return cmd
}

func runHostList(ctx context.Context, g *globals) error {
	s, err := g.open(ctx, needNone)
	if err != nil {
		return err
	}
	defer s.Close()
	hosts := s.repo.Config().Hosts
	var tw *tabwriter.Writer
	if !g.json && !g.quiet {
		tw = tabwriter.NewWriter(g.out.w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tENROLLED\tREVOKED\tSIGNING KEY")
	}
	for _, h := range hosts {
		revoked := ""
		if h.Revoked != nil {
			revoked = h.Revoked.Local().Format("2006-01-02 15:04:05")
		}
		if g.json {
			g.out.emit(map[string]any{"type": "host", "host": h.Name, "enrolled": h.Enrolled, "revoked": h.Revoked, "signing_key": h.SigningKey, "writer_recipient": h.WriterRecipient})
		} else if tw != nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Name, h.Enrolled.Local().Format("2006-01-02 15:04:05"), revoked, h.SigningKey)
		}
	}
	if tw != nil {
		tw.Flush()
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "hosts": len(hosts)})
	}
	return nil
}

func runHostEnroll(ctx context.Context, g *globals, name, out string) error {
	s, err := g.open(ctx, needNone)
	if err != nil {
		return err
	}
	defer s.Close()
	if s.repo.Secrets() == nil {
		return withHint(usagef("enrolling a host needs the recovery identity or an enrolled host's credential"), "pass --identity or --host-key")
	}
	if _, err := os.Lstat(out); !isNotExist(err) {
		return withHint(usagef("%s already exists; refusing to overwrite a credential", out), "choose another --out path")
	}
	g.auditTarget = "host " + name
	cred, err := s.repo.EnrollHost(ctx, name, time.Now())
	if err != nil {
		return err
	}
	if err := crypt.WriteKeyFile(out, cred.Marshal(time.Now())); err != nil {
		return fmt.Errorf("host %q enrolled, but writing its credential failed (revoke it and enrol again): %w", name, err)
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "host": name, "credential": out, "signing_key": cred.Signing.Public()})
		return nil
	}
	g.out.textf("enrolled host %q; its credential is in %s (copy it to the host as its host_key, mode 0600)\n", name, out)
	return nil
}

func runHostRevoke(ctx context.Context, g *globals, name string) error {
	s, err := g.open(ctx, needNone)
	if err != nil {
		return err
	}
	defer s.Close()
	if s.repo.Secrets() == nil {
		return withHint(usagef("revoking a host needs the recovery identity or another host's credential"), "pass --identity or --host-key")
	}
	g.auditTarget = "host " + name
	if err := s.repo.RevokeHost(ctx, name, time.Now()); err != nil {
		return err
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "revoked": name})
		return nil
	}
	g.out.textf("revoked host %q: its snapshots from now on are rejected; the repository secrets were sealed anew without it\n", name)
	return nil
}
