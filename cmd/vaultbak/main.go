// Command vaultbak backs up files, directories and streams into an
// encrypted, deduplicated repository replicated across regions, and
// restores them verified. See the README for the commands and exit codes.
package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// globals are the flags every command shares.
type globals struct {
	configPath   string
	identityPath string
	hostKeyPath  string
	json         bool
	quiet        bool

	out *output

	// sessions are the repositories the command opened; they stay open
	// until its audit record is written (see audit.go).
	sessions     []*session
	auditSession *session // the repository the command acted on
	auditTarget  string   // what it acted on: a snapshot ID, a host
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "vaultbak",
		Short: "Encrypted, deduplicated, multi-region backups with verified restores",
		Long: `vaultbak backs up files, directories and database dumps into an encrypted,
deduplicated repository held in full by every configured region, and restores
them, verified byte for byte, from any healthy region.

Exit codes: 0 success, 1 failure, 2 usage or configuration error,
3 completed with warnings, 4 integrity failure, 5 drill objectives not met,
130 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			g.out = newOutput(g.json, g.quiet)
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&g.configPath, "config", "", "config file (env VAULTBAK_CONFIG, default ./vaultbak.yaml)")
	f.StringVar(&g.identityPath, "identity", "", "recovery identity file (env VAULTBAK_IDENTITY)")
	f.StringVar(&g.hostKeyPath, "host-key", "", "host credential file (env VAULTBAK_HOST_KEY, default: host_key in the config)")
	f.BoolVar(&g.json, "json", false, "print one JSON object per line, ending with a summary")
	f.BoolVarP(&g.quiet, "quiet", "q", false, "print nothing but errors")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err}
	})
	root.AddCommand(
		newKeygenCmd(g),
		newInitCmd(g),
		newBackupCmd(g),
		newSnapshotsCmd(g),
		newLsCmd(g),
		newRestoreCmd(g),
		newDumpCmd(g),
		newCheckCmd(g),
		newReplicateCmd(g),
		newHostCmd(g),
		newKeyCmd(g),
		newAuditCmd(g),
		newDrillCmd(g),
		newCompletionCmd(g),
		newManCmd(g),
	)
	return root
}

func main() {
	stopProfile := startProfile()
	code := run(os.Args[1:])
	stopProfile()
	os.Exit(code)
}

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{}
	root := newRootCmd(g)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if g.out == nil {
		g.out = newOutput(false, false)
	}
	if err != nil && isCobraUsage(err) {
		err = &usageError{err}
	}
	code := exitCode(ctx, err)
	defer func() {
		for _, s := range g.sessions {
			s.repo.Close()
		}
	}()
	if cmd != nil {
		// Record even an interrupted command, briefly.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		defer g.recordAudit(actx, cmd, code)
	}
	var we *warningsError
	switch {
	case err == nil:
	case errors.As(err, &we):
		g.out.errorLine(err, hintFor(err))
	case code == exitInterrupted:
		g.out.errorLine(errors.New("interrupted; what was written so far is reused by the next run"), "")
	default:
		g.out.errorLine(err, hintFor(err))
	}
	return code
}

// isCobraUsage recognises cobra's own argument errors.
func isCobraUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.Contains(s, "arg(s)") || strings.HasPrefix(s, "unknown flag") || strings.HasPrefix(s, "required flag")
}
