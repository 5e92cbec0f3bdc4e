package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes a man page per command, generated from the commands'
// own help, into a directory. It is hidden: packagers and the README's
// install steps run it, users read the pages.
func newManCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "man --dir DIR",
		Short: "Write the man pages (section 1) into DIR",
		Long: `Write one man page per command (vaultbak.1, vaultbak-backup.1, …) into DIR,
generated from the commands' help. SOURCE_DATE_EPOCH sets the date the
pages carry, for reproducible builds.`,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return usagef("man needs --dir DIR")
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			escapeHelp(root)
			header := &doc.GenManHeader{Section: "1", Source: "vaultbak", Manual: "vaultbak manual"}
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("man pages in %s: %w", dir, err)
			}
			g.out.textf("man pages written to %s\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write the pages into (created if missing)")
	return cmd
}

// escapeHelp makes the help texts below c literal for the man page
// generator, which reads them as Markdown: a "*" (as in "*.tmp") would
// start emphasis. Lines indented as code are left as they are.
func escapeHelp(c *cobra.Command) {
	lines := strings.Split(c.Long, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "    ") && !strings.HasPrefix(l, "\t") {
			lines[i] = strings.ReplaceAll(l, "*", `\*`)
		}
	}
	c.Long = strings.Join(lines, "\n")
	for _, sub := range c.Commands() {
		escapeHelp(sub)
	}
}
