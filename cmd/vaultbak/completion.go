package main

import (
	"github.com/spf13/cobra"
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

Start a new shell for it to take effect.`,
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
