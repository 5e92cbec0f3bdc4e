package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// notifyTimeout bounds the notify command: a hung mailer must not hold a
// nightly job forever.
const notifyTimeout = 2 * time.Minute

// notifyCommand returns the command to run after backup and drill:
// --notify-command, else notify_command in the config (cfg may be nil when
// the config did not load).
func notifyCommand(flag string, cfg *fileConfig) string {
	if flag != "" || cfg == nil {
		return flag
	}
	return cfg.NotifyCommand
}

// notify runs command with sh -c, the JSON summary on its stdin and the
// exit code in VAULTBAK_EXIT_CODE, so that mail, chat or a pager can be
// wired without a wrapper script. Its output goes to stderr (stdout may
// carry JSON). Its failure is a warning on stderr; it never changes the
// exit code. Its environment is vaultbak's without the credentials the
// config names (and the standard AWS ones): the command gets no secret.
func notify(ctx context.Context, g *globals, command string, cfg *fileConfig, summary map[string]any, code int) {
	if command == "" {
		return
	}
	data, err := json.Marshal(summary)
	if err != nil {
		notifyWarn(g, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Stdin = bytes.NewReader(append(data, '\n'))
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	cmd.Env = append(notifyEnv(os.Environ(), cfg), fmt.Sprintf("VAULTBAK_EXIT_CODE=%d", code))
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		notifyWarn(g, fmt.Errorf("still running after %s: stopped", notifyTimeout))
	case errors.As(err, &ee) && ee.Exited():
		notifyWarn(g, fmt.Errorf("exited with status %d", ee.ExitCode()))
	default:
		notifyWarn(g, err)
	}
}

// notifyWarn reports a failed notify command. It goes to stderr even under
// --json, whose summary is already written (the command reads it).
func notifyWarn(g *globals, err error) {
	fmt.Fprintf(g.out.errw, "warning: notify command: %v (the exit code is unchanged)\n", err)
}

// notifyEnv returns env without the variables that hold credentials: the
// ones the config names for its regions and the standard AWS ones.
func notifyEnv(env []string, cfg *fileConfig) []string {
	secret := map[string]bool{"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true, "VAULTBAK_EXIT_CODE": true}
	if cfg != nil {
		for _, r := range cfg.Regions {
			secret[r.AccessKeyIDEnv] = true
			secret[r.SecretAccessKeyEnv] = true
		}
	}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !secret[name] {
			out = append(out, kv)
		}
	}
	return out
}
