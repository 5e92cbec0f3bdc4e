package s3test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vaultbak/backend/s3"
)

// Default root credentials, the same as scripts/minio.sh uses.
const (
	DefaultAccessKey = "vaultbak"
	DefaultSecretKey = "vaultbak-secret"
)

const (
	readyTimeout = 30 * time.Second // from exec to a live health endpoint
	stopTimeout  = 10 * time.Second // from SIGTERM to SIGKILL
	portAttempts = 5                // fresh ports tried when one is taken
	logTailBytes = 32 << 10         // of MinIO's log shown on failure
)

// errPortTaken reports that MinIO could not bind its port.
var errPortTaken = errors.New("port already in use")

// LookupMinIO returns the MinIO binary to run: $VAULTBAK_MINIO when set,
// else bin/minio in the tools cache ($VAULTBAK_TOOLS, default
// ~/.cache/vaultbak-tools), where scripts/minio.sh install puts it.
func LookupMinIO() (string, error) {
	bin := os.Getenv("VAULTBAK_MINIO")
	if bin == "" {
		tools := os.Getenv("VAULTBAK_TOOLS")
		if tools == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("s3test: cannot locate the MinIO binary: %w; set VAULTBAK_MINIO", err)
			}
			tools = filepath.Join(home, ".cache", "vaultbak-tools")
		}
		bin = filepath.Join(tools, "bin", "minio")
	}
	fi, err := os.Stat(bin)
	if err == nil && (!fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0) {
		err = errors.New("not an executable file")
	}
	if err != nil {
		return "", fmt.Errorf("s3test: no MinIO server binary at %s (%v); run scripts/minio.sh install, or set VAULTBAK_MINIO to a MinIO binary", bin, err)
	}
	return bin, nil
}

// MinIOBinary returns the MinIO binary to run (see [LookupMinIO]) and fails
// the test, never skips it, when there is none.
func MinIOBinary(t testing.TB) string {
	t.Helper()
	bin, err := LookupMinIO()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Options configures one MinIO server.
type Options struct {
	// TLS makes the server speak HTTPS only, with a certificate for
	// 127.0.0.1, ::1 and localhost signed by a CA generated for this server;
	// Server.CACertFile holds that CA.
	TLS bool
	// AccessKey and SecretKey are the root credentials; empty means
	// DefaultAccessKey and DefaultSecretKey. MinIO wants at least 3 and 8
	// characters.
	AccessKey, SecretKey string
	// MemLimit caps the server's memory, in MinIO's --memlimit syntax
	// ("512MiB", the default when empty).
	MemLimit string
}

// Server is one MinIO server on 127.0.0.1. Its methods are safe for
// concurrent use.
type Server struct {
	// Endpoint is "127.0.0.1:port"; it stays the same across Restart.
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Secure tells whether the server speaks HTTPS (Options.TLS).
	Secure bool
	// CACertFile is the PEM file of the CA that signed the server's
	// certificate, or "" without TLS.
	CACertFile string
	// Dir holds the server's data/, certs/ and its log.
	Dir string
	// LogFile collects MinIO's standard output and error, across restarts.
	LogFile string

	bin      string
	memLimit string
	ownsDir  bool         // Close removes Dir
	health   *http.Client // for readiness polls

	mu      sync.Mutex
	cmd     *exec.Cmd     // nil when not running
	exited  chan struct{} // closed when cmd has exited
	stopped bool          // set by Close
}

// Start starts a MinIO server for the test and stops it when the test and
// its subtests end. Its data lives under t.TempDir(). Start fails the test
// when the server does not come up; it prints MinIO's log when the test
// fails.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := MinIOBinary(t)
	s, err := launch(bin, t.TempDir(), false, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("MinIO at %s, log %s:\n%s", s.Endpoint, s.LogFile, s.LogTail())
		}
	})
	return s
}

// Launch starts a MinIO server owned by the caller, for servers shared by
// the tests of a whole binary: call it from a sync.Once and call Close from
// TestMain after m.Run. Its data lives in a new temporary directory, which
// Close removes.
func Launch(opts Options) (*Server, error) {
	bin, err := LookupMinIO()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vaultbak-minio-")
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	s, err := launch(bin, dir, true, opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func launch(bin, dir string, ownsDir bool, opts Options) (*Server, error) {
	s := &Server{
		AccessKey: opts.AccessKey,
		SecretKey: opts.SecretKey,
		Secure:    opts.TLS,
		Dir:       dir,
		LogFile:   filepath.Join(dir, "minio.log"),
		bin:       bin,
		memLimit:  opts.MemLimit,
		ownsDir:   ownsDir,
	}
	if s.AccessKey == "" {
		s.AccessKey = DefaultAccessKey
	}
	if s.SecretKey == "" {
		s.SecretKey = DefaultSecretKey
	}
	if len(s.AccessKey) < 3 || len(s.SecretKey) < 8 {
		return nil, errors.New("s3test: MinIO wants an access key of at least 3 and a secret key of at least 8 characters")
	}
	if s.memLimit == "" {
		s.memLimit = "512MiB"
	}
	for _, d := range []string{s.dataDir(), s.certsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("s3test: %w", err)
		}
	}

	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	if opts.TLS {
		s.CACertFile = filepath.Join(dir, "ca.pem")
		ca, err := writeCerts(s.certsDir(), s.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("s3test: certificates: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	s.health = &http.Client{Transport: tr, Timeout: 2 * time.Second}

	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range portAttempts {
		var port int
		if port, err = freePort(); err != nil {
			return nil, err
		}
		s.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = s.startLocked(); !errors.Is(err, errPortTaken) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) dataDir() string  { return filepath.Join(s.Dir, "data") }
func (s *Server) certsDir() string { return filepath.Join(s.Dir, "certs") }

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("s3test: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// env is the test process's environment without MinIO settings, plus the
// server's own.
func (s *Server) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") && !strings.HasPrefix(kv, "_MINIO") {
			env = append(env, kv)
		}
	}
	return append(env,
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1", // smaller buffer pool, no root-disk refusal
		"MINIO_MEMLIMIT="+s.memLimit,
	)
}

// startLocked starts MinIO on s.Endpoint and waits until it is live.
func (s *Server) startLocked() error {
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	fmt.Fprintf(logf, "--- %s starting MinIO on %s\n", time.Now().UTC().Format(time.RFC3339), s.Endpoint)
	cmd := exec.Command(s.bin, "server",
		"--address", s.Endpoint,
		"--certs-dir", s.certsDir(), // always: never ~/.minio/certs
		"--quiet", "--anonymous", // no banner with credentials
		s.dataDir())
	cmd.Env = s.env()
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logf.Close() // the child holds its own descriptor
	if err != nil {
		return fmt.Errorf("s3test: start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-exited:
			s.cmd = nil
			out := s.logSince(logStart)
			if strings.Contains(out, "address already in use") {
				return fmt.Errorf("s3test: MinIO on %s: %w", s.Endpoint, errPortTaken)
			}
			return fmt.Errorf("s3test: MinIO on %s exited during startup (%v); log %s:\n%s", s.Endpoint, cmd.ProcessState, s.LogFile, out)
		default:
		}
		if s.ready() {
			return nil
		}
		if time.Now().After(deadline) {
			s.killLocked()
			return fmt.Errorf("s3test: MinIO on %s not live after %v; log %s:\n%s", s.Endpoint, readyTimeout, s.LogFile, s.logSince(logStart))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready reports whether the server answers S3 requests. A live server
// (/minio/health/live) may still refuse them with "Server not initialized
// yet": it says so in a status header, and the cluster check
// (/minio/health/cluster) fails until its object layer, bucket metadata and
// IAM are up.
func (s *Server) ready() bool {
	scheme := "http"
	if s.Secure {
		scheme = "https"
	}
	for _, check := range []string{"live", "cluster"} {
		resp, err := s.health.Get(scheme + "://" + s.Endpoint + "/minio/health/" + check)
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Minio-Server-Status") != "" {
			return false
		}
	}
	return true
}

// Stop stops the server: SIGTERM, then SIGKILL after 10 s. Its data stays
// for Restart. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
	}
	s.killLocked()
}

// Kill kills the server at once (SIGKILL), as a crash or power loss would.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill() // an error means it has exited already
	<-s.exited
	s.cmd = nil
}

// Restart starts the server again, stopping it first when it runs, on the
// same endpoint and with the same data and certificate. It fails the test
// when the server does not come back.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		t.Fatalf("s3test: Restart of MinIO on %s after Close", s.Endpoint)
	}
	// The port may be taken for a moment by a connection in a strange
	// state; give it a few tries before giving up.
	var err error
	for range portAttempts {
		if err = s.startLocked(); !errors.Is(err, errPortTaken) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Close stops the server for good and removes its directory when Launch
// created it.
func (s *Server) Close() error {
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.ownsDir {
		return os.RemoveAll(s.Dir)
	}
	return nil
}

// LogTail returns the end of MinIO's log, for failure messages.
func (s *Server) LogTail() string { return s.logSince(0) }

// logSince returns the log from offset on, at most its last logTailBytes.
func (s *Server) logSince(offset int64) string {
	data, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	if offset > int64(len(data)) {
		offset = 0
	}
	data = data[offset:]
	if len(data) > logTailBytes {
		data = data[len(data)-logTailBytes:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
		data = append([]byte("[...]\n"), data...)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return "(empty)"
	}
	return string(data)
}

// Config returns the configuration of a vaultbak S3 region on this server:
// its endpoint, credentials and, with TLS, its CA.
func (s *Server) Config(bucket, prefix string) s3.Config {
	return s3.Config{
		Endpoint:        s.Endpoint,
		Bucket:          bucket,
		Prefix:          prefix,
		Secure:          s.Secure,
		AccessKeyID:     s.AccessKey,
		SecretAccessKey: s.SecretKey,
		CACertFile:      s.CACertFile,
	}
}

// URL returns the region URL of bucket and prefix on this server, as a
// user writes it in the configuration (credentials are not part of it).
func (s *Server) URL(bucket, prefix string) string {
	scheme := "s3"
	if !s.Secure {
		scheme = "s3+http"
	}
	u := scheme + "://" + s.Endpoint + "/" + bucket
	if prefix != "" {
		u += "/" + prefix
	}
	return u
}

// Backend connects to bucket and prefix on this server, creating the bucket
// when needed, and closes the backend when the test ends.
func (s *Server) Backend(t testing.TB, bucket, prefix string) *s3.S3 {
	t.Helper()
	b, err := s3.New(s.Config(bucket, prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.EnsureBucket(t.Context(), false); err != nil {
		t.Fatalf("MinIO on %s: %v", s.Endpoint, err)
	}
	return b
}
