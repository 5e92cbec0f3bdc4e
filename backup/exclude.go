package backup

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Excluder decides which paths a backup leaves out.
//
// A pattern without a slash matches the name of an entry at any depth
// ("*.tmp", "node_modules"). A pattern with a slash matches an absolute
// path or any of its parents ("/home/*/.cache", "/var/tmp"). Patterns use
// filepath.Match syntax.
type Excluder struct {
	names []string
	paths []string
}

// NewExcluder validates patterns.
func NewExcluder(patterns []string) (*Excluder, error) {
	e := &Excluder{}
	for _, p := range patterns {
		if p == "" {
			continue
		}
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("backup: bad exclude pattern %q: %w", p, err)
		}
		if strings.Contains(p, "/") {
			e.paths = append(e.paths, filepath.Clean(p))
		} else {
			e.names = append(e.names, p)
		}
	}
	return e, nil
}

// Excluded reports whether the entry at absolute path abs is left out.
func (e *Excluder) Excluded(abs string) bool {
	base := filepath.Base(abs)
	for _, p := range e.names {
		if ok, _ := filepath.Match(p, base); ok {
			return true
		}
	}
	for cur := abs; cur != "/" && cur != "."; cur = filepath.Dir(cur) {
		for _, p := range e.paths {
			if ok, _ := filepath.Match(p, cur); ok {
				return true
			}
		}
	}
	return false
}
