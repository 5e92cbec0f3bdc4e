package e2e

// Shell completion and man pages, as an administrator installs them: the
// completion scripts load in bash (with bash-completion), zsh and fish and
// complete commands, subcommands and flags; the man pages are written one
// per command. The shells come from scripts/ops-tools.sh; a missing one
// fails the test.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// completionScript writes `vaultbak completion SHELL` to a file.
func completionScript(t *testing.T, shell string) string {
	t.Helper()
	dir := t.TempDir()
	r := vaultbak(t, dir, baseEnv(), runOpts{}, "completion", shell)
	if r.code != exitOK || r.stderr != "" || r.stdout == "" {
		t.Fatalf("completion %s: want a script on stdout\n%s", shell, r)
	}
	p := filepath.Join(dir, "vaultbak."+shell)
	writeFile(t, p, []byte(r.stdout), 0o644)
	return p
}

// shellEnv finds vaultbak on PATH as the completion scripts expect.
func shellEnv() []string {
	return append(baseEnv(), "PATH="+filepath.Dir(vbBin)+":/usr/bin:/bin")
}

// completions runs script in shell (with extra environment) and returns
// the candidates it prints, one a line.
func completions(t *testing.T, shell string, script string, env ...string) []string {
	t.Helper()
	cmd := exec.Command(requireTool(t, shell), "-c", script)
	cmd.Env = append(env, shellEnv()...) // its PATH last: the one that counts
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s: %v\n%s\n%s", shell, err, out, stderr)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			got = append(got, l)
		}
	}
	return got
}

// TestCompletionBash: with bash-completion loaded, the script completes
// commands, subcommands, flags and the completion command's own shells;
// the hidden man command is not offered.
func TestCompletionBash(t *testing.T) {
	t.Parallel()
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Fatalf("bash-completion is missing: run scripts/ops-tools.sh install (%v)", err)
	}
	script := completionScript(t, "bash")
	// complete LINE prints what pressing Tab at the end of LINE offers.
	prelude := `source ` + bashCompletion + `
source ` + script + `
compopt() { :; } # only valid inside a real completion
complete_line() {
  COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
  read -ra COMP_WORDS <<< "$COMP_LINE"
  [[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
  COMPREPLY=()
  __start_vaultbak vaultbak
  printf '%s\n' "${COMPREPLY[@]}"
}
`
	for line, want := range map[string][]string{
		"vaultbak rep":            {"replicate"},
		"vaultbak replicate ":     {"status", "sync"},
		"vaultbak completion ":    {"bash", "zsh", "fish"},
		"vaultbak backup --exc":   {"--exclude"},
		"vaultbak --ide":          {"--identity"},
		"vaultbak ma":             nil, // man is hidden
		"vaultbak restore --targ": {"--target"},
	} {
		got := completions(t, "bash", prelude+"complete_line '"+line+"'")
		for i, g := range got { // bash may append a space or a description
			got[i] = strings.Fields(g)[0]
		}
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("bash: %q<Tab> offers %q, want %q", line, got, w)
		}
	}

	// From the config and the repository: sets, regions, snapshot IDs.
	e := newRepo(t, "primary", "offsite")
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, "a.txt"), textBytes(9, 4<<10), 0o644)
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.config, append(cfg, []byte("sets:\n  - name: docs\n    paths: [./src]\n  - name: mail\n    paths: [./src]\n")...), 0o644)
	snap := e.ok("--json", "backup", "--set", "docs")
	id := findSummary(t, jsonLines(t, snap.stdout), snap)["snapshot"].(string)[:12]
	for line, want := range map[string][]string{
		"vaultbak backup --set ":   {"docs", "mail"},
		"vaultbak drill --region ": {"offsite", "primary"},
		"vaultbak restore ":        {id, "latest"},
	} {
		got := completions(t, "bash", prelude+"complete_line '"+line+"'", e.env()...)
		for i, g := range got {
			got[i] = strings.Fields(g)[0]
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("bash: %q<Tab> offers %q, want %q", line, got, want)
		}
	}
}

// TestCompletionZshFish: the zsh script parses (zsh -n); the fish script
// loads and completes commands and subcommands.
func TestCompletionZshFish(t *testing.T) {
	t.Parallel()
	zsh := completionScript(t, "zsh")
	data, err := os.ReadFile(zsh)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "#compdef vaultbak") {
		t.Errorf("the zsh script does not start with #compdef vaultbak:\n%s", clip(string(data)))
	}
	cmd := exec.Command(requireTool(t, "zsh"), "-n", zsh)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zsh -n %s: %v\n%s", zsh, err, out)
	}

	fish := completionScript(t, "fish")
	for line, want := range map[string][]string{
		"vaultbak rep":        {"replicate"},
		"vaultbak replicate ": {"status", "sync"},
		"vaultbak dri":        {"drill"},
	} {
		got := completions(t, "fish", "source "+fish+"; complete -C '"+line+"'")
		for i, g := range got { // "name<Tab>description"
			got[i], _, _ = strings.Cut(g, "\t")
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("fish: %q<Tab> offers %q, want %q", line, got, want)
		}
	}
}

// TestManPages: `vaultbak man --dir DIR` writes a page per visible
// command, titled and sectioned, with help texts intact; the completion
// command is listed in --help, man is not.
func TestManPages(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "man1")
	r := vaultbak(t, t.TempDir(), baseEnv(), runOpts{}, "man", "--dir", dir)
	if r.code != exitOK {
		t.Fatalf("man --dir: %s", r)
	}
	for _, page := range []string{"vaultbak.1", "vaultbak-backup.1", "vaultbak-restore.1", "vaultbak-replicate-sync.1", "vaultbak-drill.1", "vaultbak-completion.1"} {
		data, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatalf("man page %s: %v", page, err)
		}
		title := strings.ToUpper(strings.TrimSuffix(page, ".1"))
		if !strings.Contains(string(data), `.TH "`+title+`" "1"`) || !strings.Contains(string(data), ".SH NAME") {
			t.Errorf("%s has no .TH %s 1 header or NAME section:\n%s", page, title, clip(string(data)))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "vaultbak-man.1")); err == nil {
		t.Error("the hidden man command has a man page")
	}
	backup, err := os.ReadFile(filepath.Join(dir, "vaultbak-backup.1"))
	if err != nil {
		t.Fatal(err)
	}
	// "*.tmp" in the help must not turn into emphasis.
	if !regexp.MustCompile(`"\*(\\&)?\.tmp"`).Match(backup) {
		t.Errorf("vaultbak-backup.1 lost the * of \"*.tmp\":\n%s", clip(string(backup)))
	}

	help := vaultbak(t, t.TempDir(), baseEnv(), runOpts{}, "--help").stdout
	if !regexp.MustCompile(`(?m)^\s+completion\s`).MatchString(help) || regexp.MustCompile(`(?m)^\s+man\s`).MatchString(help) {
		t.Errorf("--help should list completion and not man:\n%s", help)
	}
}
