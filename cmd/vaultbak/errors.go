package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"vaultbak/crypt"
	"vaultbak/repo"
)

// Exit codes, stable and documented in the README.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitWarnings    = 3
	exitIntegrity   = 4
	exitObjectives  = 5
	exitInterrupted = 130
)

// usageError is a usage or configuration mistake (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// hintError carries a line telling the user what to do.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

func withHint(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &hintError{err, hint}
}

// warningsError reports a run that completed with warnings (exit 3).
type warningsError struct{ msg string }

func (e *warningsError) Error() string { return e.msg }

// objectivesError reports a drill whose objectives were not met (exit 5).
type objectivesError struct{ msg string }

func (e *objectivesError) Error() string { return e.msg }

// exitCode maps an error to the documented exit code.
func exitCode(ctx context.Context, err error) int {
	var ue *usageError
	var we *warningsError
	var oe *objectivesError
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, repo.ErrIntegrity):
		return exitIntegrity
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &we):
		return exitWarnings
	case errors.As(err, &oe):
		return exitObjectives
	}
	return exitFailure
}

// hintFor suggests what to do about common expected failures.
func hintFor(err error) string {
	var he *hintError
	switch {
	case errors.As(err, &he):
		return he.hint
	case errors.Is(err, repo.ErrNeedRecovery):
		return "pass the recovery identity with --identity FILE or VAULTBAK_IDENTITY"
	case errors.Is(err, crypt.ErrNoIdentity):
		return "the key given is not one of this repository's; check --identity / --host-key"
	case errors.Is(err, repo.ErrBelowQuorum):
		return "nothing was committed; bring the failing regions back (or lower quorum in the config) and run the backup again"
	case errors.Is(err, repo.ErrNoRepository):
		return "create one with: vaultbak init --recovery-recipient age1..."
	case errors.Is(err, repo.ErrIntegrity):
		return "run 'vaultbak check --read-data' with the recovery identity to see all damage"
	case errors.Is(err, fs.ErrPermission):
		return "check the permissions of the path named above"
	}
	return ""
}
