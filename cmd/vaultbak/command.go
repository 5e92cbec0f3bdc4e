package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// commandSource runs a command whose standard output is the stream to back
// up. Its stderr passes through. Read returns the output and, at its end,
// io.EOF only if the command exited 0: a dump that failed or was killed
// ends the stream with an error, so no snapshot is committed.
type commandSource struct {
	cmd    *exec.Cmd
	out    io.ReadCloser
	name   string
	waited bool
	err    error
}

func startCommandSource(ctx context.Context, args []string) (*commandSource, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	cmd.Stdin = nil
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	widenPipe(out)
	name := commandName(args)
	if err := cmd.Start(); err != nil {
		return nil, withHint(fmt.Errorf("start %s: %w", name, err), "check the command after --")
	}
	return &commandSource{cmd: cmd, out: out, name: name}, nil
}

func (c *commandSource) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.out.Read(p)
	if err == io.EOF {
		c.err = c.wait()
		if c.err == nil {
			c.err = io.EOF
		}
		return n, c.err
	}
	if err != nil {
		c.err = fmt.Errorf("read the output of %s: %w", c.name, err)
	}
	return n, c.err
}

// wait reaps the command and says how it ended.
func (c *commandSource) wait() error {
	if c.waited {
		return nil
	}
	c.waited = true
	err := c.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.Exited():
		return fmt.Errorf("command %s failed with exit status %d: no snapshot was committed", c.name, ee.ExitCode())
	case errors.As(err, &ee):
		return fmt.Errorf("command %s was killed (%v): no snapshot was committed", c.name, ee.ProcessState)
	}
	return fmt.Errorf("command %s: %w", c.name, err)
}

// abort stops the command when the backup failed first.
func (c *commandSource) abort() {
	if !c.waited {
		c.cmd.Process.Signal(syscall.SIGTERM)
		c.out.Close()
		c.wait()
	}
}

// commandName is how messages name a command: its program only. Its
// arguments may hold a password (mysqldump -pSECRET), and messages never
// repeat secrets.
func commandName(args []string) string {
	return fmt.Sprintf("%q", filepath.Base(args[0]))
}

// commandSink runs a command that reads a restored stream on its stdin.
type commandSink struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	name string
}

// Under --json the command's own output goes to stderr, so that stdout
// carries JSON only.
func startCommandSink(ctx context.Context, args []string, jsonMode bool) (*commandSink, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout = os.Stdout
	if jsonMode {
		cmd.Stdout = os.Stderr
	}
	cmd.Stderr = os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	name := commandName(args)
	if err := cmd.Start(); err != nil {
		return nil, withHint(fmt.Errorf("start %s: %w", name, err), "check the command after --")
	}
	return &commandSink{cmd: cmd, in: in, name: name}, nil
}

func (c *commandSink) Write(p []byte) (int, error) { return c.in.Write(p) }

// finish closes the command's stdin and waits for it, given how writing
// the stream ended (werr). When the command stopped reading on its own
// (a broken pipe), its exit status is what to report. When the restore
// itself failed (verification), the command is stopped first, so that it
// does not take a truncated stream for a complete one.
func (c *commandSink) finish(werr error) error {
	if werr != nil && !errors.Is(werr, syscall.EPIPE) {
		c.cmd.Process.Signal(syscall.SIGTERM)
		c.in.Close()
		c.cmd.Wait()
		return werr
	}
	c.in.Close()
	err := c.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case werr != nil && errors.As(err, &ee):
		return fmt.Errorf("the command exited with status %d before reading the whole stream", ee.ExitCode())
	case werr != nil:
		return errors.New("the command stopped reading before the end of the stream")
	case errors.As(err, &ee):
		return fmt.Errorf("the command failed with exit status %d after reading the whole verified stream", ee.ExitCode())
	case err != nil:
		return err
	}
	return nil
}
