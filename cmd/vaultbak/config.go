package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"vaultbak/backend"
	"vaultbak/backend/local"
	"vaultbak/backend/s3"
	"vaultbak/repo"
)

// fileConfig is vaultbak.yaml. Unknown keys are errors, so a typo never
// silently drops a setting.
type fileConfig struct {
	Regions  []regionConfig `yaml:"regions"`
	Quorum   int            `yaml:"quorum"`
	HostKey  string         `yaml:"host_key"`
	CacheDir string         `yaml:"cache_dir"`
	Excludes []string       `yaml:"excludes"`
	Sets     []setConfig    `yaml:"sets"`
	Drill    objectives     `yaml:"drill"`
	// NotifyCommand runs (sh -c) after backup and drill with the JSON
	// summary on stdin and VAULTBAK_EXIT_CODE in its environment.
	NotifyCommand string `yaml:"notify_command"`

	path string // where it was read from
}

// setConfig is a backup set: what to back up, where (a subset of the
// regions, for data residency), and its drill objectives. Its snapshots
// carry its name (Manifest.Set), which snapshots/restore/drill --set select.
type setConfig struct {
	Name       string     `yaml:"name"`
	Paths      []string   `yaml:"paths"`
	Excludes   []string   `yaml:"excludes"`
	Tags       []string   `yaml:"tags"`
	Regions    []string   `yaml:"regions"` // region names; empty: every region
	Objectives objectives `yaml:"objectives"`
}

// objectives are drill objectives: the config's drill section, a set's
// own, or flags. Zero fields are unset.
type objectives struct {
	MaxRPO duration `yaml:"max_rpo"`
	MaxRTO duration `yaml:"max_rto"`
	Sample float64  `yaml:"sample"` // percent of the snapshot's bytes restored
	// ScratchDir is where drill restores its sample (default: the system
	// temporary directory). Only in the drill section.
	ScratchDir string `yaml:"scratch_dir"`
}

// duration is a time.Duration in YAML as "90m", "26h" or "7d".
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = duration(v)
	return nil
}

// parseDuration is time.ParseDuration that also takes whole days ("7d").
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseUint(days, 10, 16); err == nil {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("duration %q: want e.g. 90m, 26h or 7d", s)
	}
	return v, nil
}

// set returns the backup set called name.
func (c *fileConfig) set(name string) (*setConfig, error) {
	for i := range c.Sets {
		if c.Sets[i].Name == name {
			return &c.Sets[i], nil
		}
	}
	names := make([]string, len(c.Sets))
	for i, s := range c.Sets {
		names[i] = s.Name
	}
	if len(names) == 0 {
		return nil, withHint(usagef("no backup set %q: the config file %s defines none", name, c.path), "add it under 'sets:' (name, paths, regions...) or leave out --set")
	}
	return nil, usagef("no backup set %q in the config file %s (it defines %s)", name, c.path, strings.Join(names, ", "))
}

// only returns a copy of c limited to the named regions, in config order,
// with the quorum capped at their number (a set pinned to one region
// commits in that region).
func (c *fileConfig) only(names []string) *fileConfig {
	if len(names) == 0 {
		return c
	}
	out := *c
	out.Regions = nil
	for _, r := range c.Regions {
		if slices.Contains(names, r.Name) {
			out.Regions = append(out.Regions, r)
		}
	}
	if out.Quorum > len(out.Regions) {
		out.Quorum = len(out.Regions)
	}
	return &out
}

type regionConfig struct {
	Name               string   `yaml:"name"`
	URL                string   `yaml:"url"`
	AccessKeyIDEnv     string   `yaml:"access_key_id_env"`
	SecretAccessKeyEnv string   `yaml:"secret_access_key_env"`
	CACert             string   `yaml:"ca_cert"`
	Region             string   `yaml:"region"` // the S3 bucket's region, when the provider needs it
	AllowInsecureHTTP  bool     `yaml:"allow_insecure_http"`
	Tags               []string `yaml:"tags"`
}

// loadConfig reads the config file named by --config, VAULTBAK_CONFIG or
// ./vaultbak.yaml.
func loadConfig(g *globals) (*fileConfig, error) {
	p := g.configPath
	if p == "" {
		p = os.Getenv("VAULTBAK_CONFIG")
	}
	explicit := p != ""
	if p == "" {
		p = "vaultbak.yaml"
	}
	data, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			hint := "write a config file listing the regions (see README), or pass --config FILE"
			if explicit {
				hint = "check the --config path or VAULTBAK_CONFIG"
			}
			return nil, withHint(usagef("config file %s not found", p), hint)
		}
		return nil, usagef("config file: %v", err)
	}
	var c fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, withHint(usagef("config file %s is empty", p), "list the regions in it (see README, Configuration)")
		}
		return nil, withHint(usagef("config file %s: %s", p, yamlError(err)), "see README, Configuration, for the keys and their values")
	}
	c.path = p
	if err := c.validate(); err != nil {
		return nil, usagef("config file %s: %v", p, err)
	}
	return &c, nil
}

// yamlError words the YAML decoder's error in the config's terms: `line 7:
// unknown key "qourum"`, not the Go type the file is decoded into.
func yamlError(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return strings.TrimPrefix(err.Error(), "yaml: ")
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		m = unknownKey.ReplaceAllString(m, `unknown key "$1"`)
		msgs[i] = strings.ReplaceAll(m, "main.", "")
	}
	return strings.Join(msgs, "; ")
}

var unknownKey = regexp.MustCompile(`field (\S+) not found in type \S+`)

func (c *fileConfig) validate() error {
	if len(c.Regions) == 0 {
		return errors.New("no regions: list at least one under 'regions:'")
	}
	seen := map[string]bool{}
	for i, r := range c.Regions {
		if r.Name == "" {
			return fmt.Errorf("region %d has no name", i+1)
		}
		if seen[r.Name] {
			return fmt.Errorf("region name %q appears twice", r.Name)
		}
		seen[r.Name] = true
		if r.URL == "" {
			return fmt.Errorf("region %s has no url", r.Name)
		}
	}
	if c.Quorum < 0 || c.Quorum > len(c.Regions) {
		return fmt.Errorf("quorum %d is not between 1 and the number of regions (%d)", c.Quorum, len(c.Regions))
	}
	sets := map[string]bool{}
	for i, s := range c.Sets {
		switch {
		case s.Name == "" || strings.ContainsAny(s.Name, "\x00\n\r"):
			return fmt.Errorf("backup set %d has no usable name", i+1)
		case sets[s.Name]:
			return fmt.Errorf("backup set name %q appears twice", s.Name)
		}
		sets[s.Name] = true
		for _, r := range s.Regions {
			if !seen[r] {
				return fmt.Errorf("backup set %s names region %q, which is not under 'regions:'", s.Name, r)
			}
		}
		if s.Objectives.ScratchDir != "" {
			return fmt.Errorf("backup set %s: scratch_dir belongs in the drill section", s.Name)
		}
		if err := s.Objectives.validate(); err != nil {
			return fmt.Errorf("backup set %s: objectives: %w", s.Name, err)
		}
	}
	if err := c.Drill.validate(); err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	return nil
}

func (o objectives) validate() error {
	if o.Sample < 0 || o.Sample > 100 {
		return fmt.Errorf("sample %v is not a percentage in (0, 100]", o.Sample)
	}
	return nil
}

// resolve returns p relative to the config file's directory.
func (c *fileConfig) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.path), p)
}

// creating says what openRegions may create. Only init creates a local
// region's directory or an S3 bucket (with Object Lock when the repository
// locks what it writes): elsewhere a missing directory (an unmounted disk)
// must not silently become an empty region.
type creating int

const (
	createNothing creating = iota
	createRegions
	createLockedRegions
)

// openRegions opens the backend of every region.
func (c *fileConfig) openRegions(ctx context.Context, create creating) ([]*repo.Region, error) {
	var out []*repo.Region
	for _, rc := range c.Regions {
		b, err := c.openBackend(ctx, rc, create)
		if err != nil {
			return nil, err
		}
		out = append(out, &repo.Region{Name: rc.Name, Backend: b})
	}
	return out, nil
}

// quorum returns the configured quorum or the default.
func (c *fileConfig) quorum() int {
	if c.Quorum > 0 {
		return c.Quorum
	}
	return repo.DefaultQuorum(len(c.Regions))
}

// isS3 reports whether the region is an S3 bucket (else a local directory,
// or a URL openBackend refuses).
func (rc regionConfig) isS3() bool {
	return strings.HasPrefix(rc.URL, "s3://") || strings.HasPrefix(rc.URL, "s3+http://") || strings.HasPrefix(rc.URL, "s3+https://")
}

func (c *fileConfig) openBackend(ctx context.Context, rc regionConfig, create creating) (backend.Backend, error) {
	u := rc.URL
	switch {
	case rc.isS3():
		return c.openS3(ctx, rc, create)
	case strings.HasPrefix(u, "file://"):
		u = strings.TrimPrefix(u, "file://")
	case strings.Contains(u, "://"):
		scheme, _, _ := strings.Cut(u, "://")
		return nil, withHint(usagef("region %s: url scheme %q is not supported", rc.Name, scheme), "use a local directory, file:///path, s3://host/bucket/prefix (HTTPS) or s3+http://127.0.0.1:port/bucket (loopback)")
	}
	dir := c.resolve(u)
	if create == createNothing {
		if _, err := os.Stat(dir); err != nil {
			// Reads carry on from the other regions; a write counts it as
			// failed and commits if a quorum of others holds everything.
			return unavailable{dir, fmt.Errorf("region directory: %w (is the disk mounted?)", err)}, nil
		}
	}
	b, err := local.New(dir)
	if err != nil && create == createNothing {
		return unavailable{dir, fmt.Errorf("region directory: %w", err)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", rc.Name, err)
	}
	return b, nil
}

func (c *fileConfig) openS3(ctx context.Context, rc regionConfig, create creating) (backend.Backend, error) {
	sc, err := s3.ParseURL(rc.URL, rc.AllowInsecureHTTP)
	if err != nil {
		return nil, usagef("region %s: %v", rc.Name, err)
	}
	if rc.AllowInsecureHTTP && !sc.Secure {
		fmt.Fprintf(os.Stderr, "WARNING: region %s uses plain HTTP to %s: data is encrypted, but credentials and object names cross the network in clear\n", rc.Name, sc.Endpoint)
	}
	if rc.AccessKeyIDEnv != "" || rc.SecretAccessKeyEnv != "" {
		sc.AccessKeyID = os.Getenv(rc.AccessKeyIDEnv)
		sc.SecretAccessKey = os.Getenv(rc.SecretAccessKeyEnv)
		if sc.AccessKeyID == "" || sc.SecretAccessKey == "" {
			return nil, withHint(usagef("region %s: credentials: environment variable %s or %s is empty", rc.Name, rc.AccessKeyIDEnv, rc.SecretAccessKeyEnv), "export both variables named in the config (the config holds names, never secrets)")
		}
	}
	sc.CACertFile = c.resolve(rc.CACert)
	sc.Region = rc.Region
	b, err := s3.New(sc)
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", rc.Name, err)
	}
	if create != createNothing {
		if err := b.EnsureBucket(ctx, create == createLockedRegions); err != nil {
			return nil, fmt.Errorf("region %s: %w", rc.Name, err)
		}
	}
	return b, nil
}

// unavailable is a region that could not be opened: every operation fails
// with why, so reads fall back to other regions and writes drop it.
type unavailable struct {
	where string
	err   error
}

var _ backend.Backend = unavailable{}

func (u unavailable) Location() string                          { return u.where }
func (u unavailable) Put(context.Context, string, []byte) error { return u.err }
func (u unavailable) Open(context.Context, string) (backend.Object, error) {
	return nil, u.err
}
func (u unavailable) Get(context.Context, string) (io.ReadCloser, error) { return nil, u.err }
func (u unavailable) Stat(context.Context, string) (backend.Info, error) {
	return backend.Info{}, u.err
}
func (u unavailable) List(context.Context, string, func(backend.Info) error) error { return u.err }
func (u unavailable) Delete(context.Context, string) error                         { return u.err }
func (u unavailable) Close() error                                                 { return nil }
