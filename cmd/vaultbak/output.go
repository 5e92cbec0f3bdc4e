package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// output rules: results go to stdout, diagnostics to stderr. With --json,
// stdout carries only JSON objects, one per line, the last a summary.
// With --quiet nothing but errors is printed. A progress line is drawn on
// stderr only when it is a terminal, never under --json or --quiet.
type output struct {
	json  bool
	quiet bool
	mu    sync.Mutex
	w     io.Writer
	errw  io.Writer
	tty   bool
	line  bool // a progress line is on screen
	done  bool // the summary object was written: nothing follows it on stdout
}

func newOutput(jsonMode, quiet bool) *output {
	return &output{json: jsonMode, quiet: quiet, w: os.Stdout, errw: os.Stderr, tty: term.IsTerminal(int(os.Stderr.Fd()))}
}

// emit writes one JSON object (in --json mode).
func (o *output) emit(v any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clearLocked()
	if o.done {
		return
	}
	b, _ := json.Marshal(v)
	o.w.Write(append(b, '\n'))
	if m, ok := v.(map[string]any); ok && m["type"] == "summary" {
		o.done = true
	}
}

// textf writes human output to stdout unless --json or --quiet.
func (o *output) textf(format string, args ...any) {
	if o.json || o.quiet {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clearLocked()
	fmt.Fprintf(o.w, format, args...)
}

// warn reports a warning about a path on stderr (and as JSON).
func (o *output) warn(path string, err error) {
	if o.json {
		o.emit(map[string]any{"type": "warning", "path": path, "message": err.Error()})
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clearLocked()
	fmt.Fprintf(o.errw, "warning: %s: %v\n", path, err)
}

// errorLine prints an error and an optional hint to stderr.
func (o *output) errorLine(err error, hint string) {
	if o.json {
		m := map[string]any{"type": "error", "message": err.Error()}
		if hint != "" {
			m["hint"] = hint
		}
		o.emit(m)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clearLocked()
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	fmt.Fprintf(o.errw, "vaultbak: %s\n", msg)
	if hint != "" {
		fmt.Fprintf(o.errw, "hint: %s\n", hint)
	}
}

func (o *output) clearLocked() {
	if o.line {
		fmt.Fprint(o.errw, "\r\033[K")
		o.line = false
	}
}

// progress redraws status() on stderr twice a second while running, on a
// terminal only; the returned stop clears it.
func (o *output) progress(status func() string) (stop func()) {
	if !o.tty || o.json || o.quiet {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				o.mu.Lock()
				fmt.Fprintf(o.errw, "\r\033[K%s", status())
				o.line = true
				o.mu.Unlock()
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		o.mu.Lock()
		o.clearLocked()
		o.mu.Unlock()
	}
}

// humanBytes formats n as a short binary size.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
