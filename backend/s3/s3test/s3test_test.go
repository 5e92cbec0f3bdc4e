package s3test_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"vaultbak/backend"
	"vaultbak/backend/s3"
	"vaultbak/backend/s3/s3test"
)

// TestRestart takes a server down (cleanly and by SIGKILL) and up again:
// same endpoint, same data.
func TestRestart(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	srv.Backend(t, "restart", "") // creates the bucket
	cfg := srv.Config("restart", "repo")
	cfg.MaxRetries = 1 // a down server fails at once
	b, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want := []byte("the same bytes after every restart")
	if err := b.Put(t.Context(), "config", want); err != nil {
		t.Fatal(err)
	}
	endpoint := srv.Endpoint

	for _, down := range []struct {
		name string
		fn   func()
	}{{"Kill", srv.Kill}, {"Stop", srv.Stop}} {
		down.fn()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := b.Stat(ctx, "config")
		cancel()
		if err == nil || errors.Is(err, backend.ErrNotFound) {
			t.Fatalf("Stat after %s = %v, want a connection error", down.name, err)
		}
		down.fn() // a second time does nothing

		srv.Restart(t)
		if srv.Endpoint != endpoint {
			t.Fatalf("Restart after %s moved the server from %s to %s", down.name, endpoint, srv.Endpoint)
		}
		got, err := backend.ReadAll(t.Context(), b, "config", 1<<10)
		if err != nil {
			t.Fatalf("ReadAll after %s and Restart: %v", down.name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("after %s and Restart: read %q, want %q", down.name, got, want)
		}
	}

	// Restart of a running server restarts it.
	srv.Restart(t)
	if _, err := b.Stat(t.Context(), "config"); err != nil {
		t.Fatalf("Stat after restarting a running server: %v", err)
	}
}

func TestTLS(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{TLS: true, AccessKey: "tls-user", SecretKey: "tls-secret-key"})
	if !srv.Secure || srv.CACertFile == "" {
		t.Fatalf("TLS server: Secure %v, CACertFile %q", srv.Secure, srv.CACertFile)
	}
	if got := srv.URL("bkt", "p/q"); got != "s3://"+srv.Endpoint+"/bkt/p/q" {
		t.Errorf("URL = %q", got)
	}
	b := srv.Backend(t, "tls-bucket", "p")
	if err := b.Put(t.Context(), "config", []byte("x")); err != nil {
		t.Fatalf("Put over TLS: %v", err)
	}
	// The server speaks nothing but TLS.
	resp, err := http.Get("http://" + srv.Endpoint + "/minio/health/live")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP request to a TLS server answered %s", resp.Status)
		}
	}
}

func TestPlainURL(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	if got := srv.URL("bkt", ""); got != "s3+http://"+srv.Endpoint+"/bkt" {
		t.Errorf("URL = %q", got)
	}
	cfg, err := s3.ParseURL(srv.URL("bkt", "p"), false)
	if err != nil {
		t.Fatalf("ParseURL(URL): %v", err)
	}
	want := srv.Config("bkt", "p")
	want.AccessKeyID, want.SecretAccessKey = "", ""
	if cfg != want {
		t.Errorf("ParseURL(URL) = %+v, want %+v", cfg, want)
	}
}

// TestLaunch checks a caller-owned server: Close stops it and removes its
// directory.
func TestLaunch(t *testing.T) {
	srv, err := s3test.Launch(s3test.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.Backend(t, "launched", "")
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(srv.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left %s behind (%v)", srv.Dir, err)
	}
	if _, err := http.Get("http://" + srv.Endpoint + "/minio/health/live"); err == nil {
		t.Error("server still answers after Close")
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// recorder is a testing.TB that records Fatal and Skip instead of ending
// the real test. Both end the calling goroutine, as the real ones do.
type recorder struct {
	testing.TB
	fatal, skipped string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Fatal(args ...any)         { r.fatal = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Fatalf(f string, a ...any) { r.fatal = fmt.Sprintf(f, a...); runtime.Goexit() }
func (r *recorder) FailNow()                  { r.fatal = "FailNow"; runtime.Goexit() }
func (r *recorder) Skip(args ...any)          { r.skipped = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Skipf(f string, a ...any)  { r.skipped = fmt.Sprintf(f, a...); runtime.Goexit() }
func (r *recorder) SkipNow()                  { r.skipped = "SkipNow"; runtime.Goexit() }

// TestMissingBinaryFails checks that a missing MinIO fails a test, with a
// message that says how to get one, and never skips it.
func TestMissingBinaryFails(t *testing.T) {
	dir := t.TempDir()
	for name, env := range map[string]map[string]string{
		"VAULTBAK_MINIO":     {"VAULTBAK_MINIO": filepath.Join(dir, "no-minio")},
		"VAULTBAK_MINIO dir": {"VAULTBAK_MINIO": dir},
		"empty cache":        {"VAULTBAK_MINIO": "", "VAULTBAK_TOOLS": dir},
	} {
		for k, v := range env {
			t.Setenv(k, v)
		}
		for fn, call := range map[string]func(testing.TB){
			"MinIOBinary": func(tb testing.TB) { s3test.MinIOBinary(tb) },
			"Start":       func(tb testing.TB) { s3test.Start(tb, s3test.Options{}) },
		} {
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				call(r)
			}()
			<-done
			if r.skipped != "" {
				t.Errorf("%s: %s skipped the test: %s", name, fn, r.skipped)
			}
			if !strings.Contains(r.fatal, "scripts/minio.sh install") {
				t.Errorf("%s: %s: fatal message %q does not say to run scripts/minio.sh install", name, fn, r.fatal)
			}
		}
		if _, err := s3test.Launch(s3test.Options{}); err == nil || !strings.Contains(err.Error(), "scripts/minio.sh install") {
			t.Errorf("%s: Launch = %v, want an error naming scripts/minio.sh install", name, err)
		}
	}
}

// TestScript drives scripts/minio.sh start and stop as a developer does.
func TestScript(t *testing.T) {
	bin := s3test.MinIOBinary(t)
	script, err := filepath.Abs("../../../scripts/minio.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(script, args...)
		cmd.Env = append(os.Environ(), "VAULTBAK_MINIO="+bin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("minio.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return string(out)
	}
	// Stop even when the test fails half way.
	t.Cleanup(func() { exec.Command(script, "stop", dir).Run() })

	first := run("start", "2", dir)
	lines := strings.Split(strings.TrimSpace(first), "\n")
	if len(lines) != 2 {
		t.Fatalf("start 2 printed %q, want two lines", first)
	}
	for i, line := range lines {
		name, endpoint, ok := strings.Cut(line, " ")
		if !ok || name != fmt.Sprintf("minio-%d", i+1) || !strings.HasPrefix(endpoint, "http://127.0.0.1:") {
			t.Fatalf("start printed %q, want \"minio-%d http://127.0.0.1:port\"", line, i+1)
		}
		resp, err := http.Get(endpoint + "/minio/health/live")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
	}
	if again := run("start", "2", dir); again != first {
		t.Errorf("start again printed %q, want the same servers %q", again, first)
	}

	pids := make([]int, 2)
	for i := range pids {
		data, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("minio-%d", i+1), "pid"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Sscan(string(data), &pids[i])
	}
	run("stop", dir)
	for _, pid := range pids {
		// Gone, or a zombie nobody has reaped yet.
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if _, after, _ := bytes.Cut(stat, []byte(") ")); err == nil && !bytes.HasPrefix(after, []byte("Z")) {
			t.Errorf("pid %d still runs after stop", pid)
		}
	}
	run("stop", dir) // nothing left to stop
}
