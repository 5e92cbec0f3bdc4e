package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"vaultbak/crypt"
)

func newKeygenCmd(g *globals) *cobra.Command {
	var out, kind string
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Create a recovery identity (0600) and print its public recipient",
		Long: `Create a recovery identity: the key that restores everything. Keep it
offline; 'vaultbak init' needs only the recipient this command prints.
The file is an age identity file, so age's own tools read it too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeygen(g, out, kind)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the identity to (must not exist)")
	cmd.Flags().StringVar(&kind, "kind", crypt.KindHybrid, "identity kind: hybrid (post-quantum, default) or x25519")
	cmd.MarkFlagRequired("out")
	return cmd
}

func runKeygen(g *globals, out, kind string) error {
	if kind != crypt.KindHybrid && kind != crypt.KindX25519 {
		return usagef("--kind %q: want %s or %s", kind, crypt.KindHybrid, crypt.KindX25519)
	}
	id, recipient, err := crypt.GenerateIdentity(kind)
	if err != nil {
		return err
	}
	if err := crypt.WriteKeyFile(out, crypt.IdentityFile(id, recipient, time.Now())); err != nil {
		if errors.Is(err, crypt.ErrKeyFileExists) {
			return withHint(usagef("%s already exists; refusing to overwrite a key", out), "choose another --out path")
		}
		return err
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "identity_file": out, "recipient": recipient, "kind": kind})
		return nil
	}
	g.out.textf("%s\n", recipient)
	return nil
}
