package main

import (
	"context"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"vaultbak/repo"
)

// newCompletionCmd prints a shell completion script. It replaces cobra's
// default completion command so that its help says how to install the
// script; the script itself is cobra's, which asks the binary (through
// the hidden __complete command) for commands, flags and arguments.
func newCompletionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print the completion script for bash, zsh or fish on standard output.

bash (needs the bash-completion package):
  vaultbak completion bash > /etc/bash_completion.d/vaultbak
  # or, for one user:
  vaultbak completion bash > ~/.local/share/bash-completion/completions/vaultbak

zsh (compinit must be enabled):
  vaultbak completion zsh > "${fpath[1]}/_vaultbak"

fish:
  vaultbak completion fish > ~/.config/fish/completions/vaultbak.fish

Start a new shell for it to take effect. Besides commands and flags, the
scripts complete backup sets and regions from the config file and
snapshot IDs from the repository.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, w := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(w, true)
			case "zsh":
				return root.GenZshCompletion(w)
			case "fish":
				return root.GenFishCompletion(w, true)
			}
			return usagef("completion: unknown shell %q (bash, zsh or fish)", args[0])
		},
	}
}

// completeSets completes a --set flag with the backup sets of the config
// file.
func completeSets(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		cfg, err := loadConfig(g)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, s := range cfg.Sets {
			out = append(out, cobra.CompletionWithDesc(s.Name, describeSet(s)))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func describeSet(s setConfig) string {
	d := "backup set"
	if len(s.Paths) > 0 {
		d += " of " + s.Paths[0]
		if len(s.Paths) > 1 {
			d += ", …"
		}
	}
	return d
}

// completeRegions completes a --region flag with the regions of the
// config file.
func completeRegions(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		cfg, err := loadConfig(g)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, r := range cfg.Regions {
			out = append(out, cobra.CompletionWithDesc(r.Name, r.URL))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// maxSnapshotCompletions is how many of the newest snapshots a completion
// offers.
const maxSnapshotCompletions = 50

// completeSnapshot completes a SNAPSHOT argument (the first) with "latest"
// and the newest snapshots' short IDs, described by time, host and set.
// It reads the manifests without any key (a keyless listing, like
// 'snapshots'), within a few seconds; later arguments complete as files.
func completeSnapshot(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveDefault
		}
		out := []cobra.Completion{cobra.CompletionWithDesc("latest", "the newest snapshot (with --at: the newest at or before it)")}
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
		defer cancel()
		snaps, err := listSnapshots(ctx, g)
		if err != nil {
			return out, cobra.ShellCompDirectiveNoFileComp
		}
		sort.Slice(snaps, func(i, j int) bool { return snaps[i].Time.After(snaps[j].Time) })
		for i, s := range snaps {
			if i == maxSnapshotCompletions {
				break
			}
			d := s.Time.Local().Format("2006-01-02 15:04") + " " + s.Host
			if s.Set != "" {
				d += " set " + s.Set
			}
			out = append(out, cobra.CompletionWithDesc(repo.ShortID(s.ID), d))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// listSnapshots reads the verified snapshots with no key at all.
func listSnapshots(ctx context.Context, g *globals) ([]*repo.Snapshot, error) {
	cfg, err := loadConfig(g)
	if err != nil {
		return nil, err
	}
	regions, err := cfg.openRegions(ctx, createNothing)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, regions, repo.Keys{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.Snapshots(ctx)
}
