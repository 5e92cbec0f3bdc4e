package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"vaultbak/backend/local"
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

	path string // where it was read from
}

type regionConfig struct {
	Name               string   `yaml:"name"`
	URL                string   `yaml:"url"`
	AccessKeyIDEnv     string   `yaml:"access_key_id_env"`
	SecretAccessKeyEnv string   `yaml:"secret_access_key_env"`
	CACert             string   `yaml:"ca_cert"`
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
		return nil, usagef("config file %s: %v", p, err)
	}
	c.path = p
	if err := c.validate(); err != nil {
		return nil, usagef("config file %s: %v", p, err)
	}
	return &c, nil
}

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
	return nil
}

// resolve returns p relative to the config file's directory.
func (c *fileConfig) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.path), p)
}

// openRegions opens the backend of every region. Only init may create a
// local region's directory: elsewhere a missing directory (an unmounted
// disk) must not silently become an empty region on another disk.
func (c *fileConfig) openRegions(create bool) ([]*repo.Region, error) {
	var out []*repo.Region
	for _, rc := range c.Regions {
		b, err := c.openBackend(rc, create)
		if err != nil {
			return nil, err
		}
		out = append(out, &repo.Region{Name: rc.Name, Backend: b})
	}
	return out, nil
}

func (c *fileConfig) openBackend(rc regionConfig, create bool) (*local.Local, error) {
	u := rc.URL
	switch {
	case strings.HasPrefix(u, "file://"):
		u = strings.TrimPrefix(u, "file://")
	case strings.Contains(u, "://"):
		scheme, _, _ := strings.Cut(u, "://")
		return nil, withHint(usagef("region %s: url scheme %q is not supported", rc.Name, scheme), "use a local directory path or file:// URL")
	}
	dir := c.resolve(u)
	if !create {
		if _, err := os.Stat(dir); err != nil {
			return nil, withHint(fmt.Errorf("region %s: %w", rc.Name, err), "is the disk mounted? a new repository is created with 'vaultbak init'")
		}
	}
	b, err := local.New(dir)
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", rc.Name, err)
	}
	return b, nil
}
