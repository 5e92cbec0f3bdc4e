package s3_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"vaultbak/backend"
	"vaultbak/backend/backendtest"
	"vaultbak/backend/s3"
	"vaultbak/backend/s3/s3test"
)

// sharedServer is one MinIO for the whole test binary, started by the first
// test that needs it and stopped by TestMain.
type sharedServer struct {
	opts      s3test.Options
	once      sync.Once
	srv       *s3test.Server
	err       error
	logPrints atomic.Bool // the log is printed once, on the first failure
}

var (
	plainServer = &sharedServer{}
	tlsServer   = &sharedServer{opts: s3test.Options{TLS: true}}
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, sh := range []*sharedServer{plainServer, tlsServer} {
		if sh.srv != nil {
			if err := sh.srv.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "stop MinIO: %v\n", err)
			}
		}
	}
	os.Exit(code)
}

// get returns the shared server, failing (never skipping) the test when it
// cannot be started.
func (sh *sharedServer) get(t *testing.T) *s3test.Server {
	t.Helper()
	sh.once.Do(func() { sh.srv, sh.err = s3test.Launch(sh.opts) })
	if sh.err != nil {
		t.Fatal(sh.err)
	}
	t.Cleanup(func() {
		if t.Failed() && sh.logPrints.CompareAndSwap(false, true) {
			t.Logf("MinIO at %s, log %s:\n%s", sh.srv.Endpoint, sh.srv.LogFile, sh.srv.LogTail())
		}
	})
	return sh.srv
}

var seq atomic.Int64

// unique returns base with a number no other call in this binary gets, for
// bucket names and prefixes.
func unique(base string) string { return fmt.Sprintf("%s-%d", base, seq.Add(1)) }

// newS3 connects to bucket/prefix of srv with cfg changed by edit, creating
// the bucket. The caller closes the backend.
func newS3(t *testing.T, srv *s3test.Server, bucket, prefix string, edit func(*s3.Config)) *s3.S3 {
	t.Helper()
	cfg := srv.Config(bucket, prefix)
	if edit != nil {
		edit(&cfg)
	}
	b, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureBucket(t.Context(), false); err != nil {
		b.Close()
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	t.Run("http", func(t *testing.T) {
		srv := plainServer.get(t)
		// Each property in a bucket of its own, objects at the bucket's root.
		backendtest.Run(t, func(t *testing.T) backend.Backend {
			return newS3(t, srv, unique("conformance"), "", nil)
		})
	})
	t.Run("https", func(t *testing.T) {
		srv := tlsServer.get(t)
		// One bucket, each property under a prefix of its own; "repo/1" is a
		// string prefix of "repo/10", so a listing that leaks across
		// prefixes fails.
		bucket := unique("conformance-tls")
		var n atomic.Int64
		backendtest.Run(t, func(t *testing.T) backend.Backend {
			return newS3(t, srv, bucket, fmt.Sprintf("repo/%d", n.Add(1)), nil)
		})
	})
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url           string
		allowInsecure bool
		want          s3.Config
		wantErr       string // substring of the error; "" for success
	}{
		{url: "s3://s3.eu-central-1.amazonaws.com/backups", want: s3.Config{Endpoint: "s3.eu-central-1.amazonaws.com", Bucket: "backups", Secure: true}},
		{url: "s3://s3.example.com:9000/backups/host1/repo/", want: s3.Config{Endpoint: "s3.example.com:9000", Bucket: "backups", Prefix: "host1/repo", Secure: true}},
		{url: "s3+https://s3.example.com/backups/p", want: s3.Config{Endpoint: "s3.example.com", Bucket: "backups", Prefix: "p", Secure: true}},
		{url: "s3://s3.example.com/abc", want: s3.Config{Endpoint: "s3.example.com", Bucket: "abc", Secure: true}},
		// Plain HTTP to loopback.
		{url: "s3+http://127.0.0.1:9000/backups/p", want: s3.Config{Endpoint: "127.0.0.1:9000", Bucket: "backups", Prefix: "p"}},
		{url: "s3+http://localhost:9000/backups", want: s3.Config{Endpoint: "localhost:9000", Bucket: "backups"}},
		{url: "s3+http://[::1]:9000/backups", want: s3.Config{Endpoint: "[::1]:9000", Bucket: "backups"}},
		{url: "s3+http://127.0.0.2/backups", want: s3.Config{Endpoint: "127.0.0.2", Bucket: "backups"}},
		// Plain HTTP anywhere else only when allowed.
		{url: "s3+http://10.0.0.1:9000/backups", wantErr: "plain HTTP to a non-loopback host"},
		{url: "s3+http://10.0.0.1:9000/backups", allowInsecure: true, want: s3.Config{Endpoint: "10.0.0.1:9000", Bucket: "backups"}},
		{url: "s3+http://minio.example.com/backups", wantErr: "plain HTTP"},
		{url: "s3+http://localhost.example.com/backups", wantErr: "plain HTTP"},
		{url: "s3+http://127.0.0.1.nip.io/backups", wantErr: "plain HTTP"},
		// Other schemes.
		{url: "http://127.0.0.1:9000/backups", wantErr: "scheme"},
		{url: "https://s3.example.com/backups", wantErr: "scheme"},
		{url: "s3.example.com/backups", wantErr: "scheme"},
		{url: "", wantErr: "scheme"},
		// Bucket.
		{url: "s3://s3.example.com", wantErr: "no bucket"},
		{url: "s3://s3.example.com/", wantErr: "no bucket"},
		{url: "s3://s3.example.com//prefix", wantErr: "no bucket"},
		{url: "s3://s3.example.com/ab", wantErr: "shorter than 3"},
		{url: "s3://s3.example.com/ab/prefix", wantErr: "shorter than 3"},
		{url: "s3:///backups", wantErr: "no host"},
		{url: "s3://:9000/backups", wantErr: "no host"},
		{url: "s3://s3.example.com/bad_bucket!", wantErr: "not valid"},
		{url: "s3://s3.example.com/192.168.1.1", wantErr: "not valid"},
		{url: "s3://s3.example.com/" + strings.Repeat("b", 64), wantErr: "not valid"},
		// Prefix: the same rules as object names.
		{url: "s3://s3.example.com/backups/a//b", wantErr: "prefix"},
		{url: "s3://s3.example.com/backups/a/../b", wantErr: "prefix"},
		{url: "s3://s3.example.com/backups/./b", wantErr: "prefix"},
		// Credentials never belong in the URL, whatever else is wrong with it.
		{url: "s3://AKIAEXAMPLE:hunter2-secret@s3.example.com/backups", wantErr: "credentials"},
		{url: "s3://AKIAEXAMPLE@s3.example.com/backups", wantErr: "credentials"},
		{url: "s3+http://AKIAEXAMPLE:hunter2-secret@127.0.0.1:9000/backups", wantErr: "credentials"},
		{url: "s3+http://AKIAEXAMPLE:hunter2-secret@10.0.0.1:9000/backups", wantErr: "credentials"},
		{url: "s3://AKIAEXAMPLE:hunter2-secret@s3.example.com/ab", wantErr: "credentials"},
		{url: "https://AKIAEXAMPLE:hunter2-secret@s3.example.com/backups", wantErr: "scheme"},
		{url: "s3://AKIAEXAMPLE:hunter2-secret@s3.example.com:bad/backups", wantErr: "bad url"},
	} {
		got, err := s3.ParseURL(tc.url, tc.allowInsecure)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParseURL(%q, %v): %v", tc.url, tc.allowInsecure, err)
		case tc.wantErr == "" && got != tc.want:
			t.Errorf("ParseURL(%q, %v) = %+v, want %+v", tc.url, tc.allowInsecure, got, tc.want)
		case tc.wantErr != "" && err == nil:
			t.Errorf("ParseURL(%q, %v) = %+v, want an error mentioning %q", tc.url, tc.allowInsecure, got, tc.wantErr)
		case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
			t.Errorf("ParseURL(%q, %v) = %v, want an error mentioning %q", tc.url, tc.allowInsecure, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseURL(%q): error %q repeats the secret", tc.url, err)
		}
	}
}

// systemBundle points AWS_CA_BUNDLE at the system's CA bundle (as this
// machine does), so the tests see what an AWS-configured host sees.
func systemBundle(t *testing.T) {
	if v := os.Getenv("AWS_CA_BUNDLE"); v != "" {
		t.Setenv("AWS_CA_BUNDLE", v)
		return
	}
	for _, f := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"} {
		if _, err := os.Stat(f); err == nil {
			t.Setenv("AWS_CA_BUNDLE", f)
			return
		}
	}
	t.Setenv("AWS_CA_BUNDLE", "") // system roots only
}

// TestUntrustedCertificate connects to a TLS server whose certificate the
// client must refuse: every operation fails, says why, and fails fast, with
// or without a configured bucket region (minio-go takes different paths);
// retrying cannot make a certificate valid.
func TestUntrustedCertificate(t *testing.T) {
	srv := tlsServer.get(t)
	systemBundle(t)
	const limit = 3 * time.Second // minio-go's 10 retries take 4-8 s

	caPEM, err := os.ReadFile(srv.CACertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	// The server's CA, trusted, but the certificate checked for another name.
	misnamed := http.DefaultTransport.(*http.Transport).Clone()
	misnamed.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "s3.example.com", MinVersion: tls.VersionTLS12}

	for _, tc := range []struct {
		name      string
		transport http.RoundTripper
		want      func(error) bool
		wantText  string
	}{
		{"unknown-authority", nil, func(err error) bool { return errors.As(err, new(x509.UnknownAuthorityError)) }, "certificate signed by unknown authority"},
		{"wrong-name", misnamed, func(err error) bool { return errors.As(err, new(x509.HostnameError)) }, "certificate is valid for"},
	} {
		for _, region := range []string{"", "us-east-1"} {
			t.Run(tc.name+"/region="+region, func(t *testing.T) {
				cfg := srv.Config(unique("untrusted"), "")
				cfg.CACertFile = "" // AWS_CA_BUNDLE and the system roots only
				cfg.Region = region
				cfg.Transport = tc.transport
				b, err := s3.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				for _, op := range []struct {
					name string
					fn   func(context.Context) error
				}{
					{"EnsureBucket", func(ctx context.Context) error { return b.EnsureBucket(ctx, false) }},
					{"Put", func(ctx context.Context) error { return b.Put(ctx, "config", []byte("x")) }},
					{"Stat", func(ctx context.Context) error { _, err := b.Stat(ctx, "config"); return err }},
					{"Get", func(ctx context.Context) error { _, err := b.Get(ctx, "config"); return err }},
					{"Open", func(ctx context.Context) error { _, err := b.Open(ctx, "config"); return err }},
					{"Delete", func(ctx context.Context) error { return b.Delete(ctx, "config") }},
					{"List", func(ctx context.Context) error {
						return b.List(ctx, "", func(backend.Info) error { return nil })
					}},
				} {
					ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
					start := time.Now()
					err := op.fn(ctx)
					took := time.Since(start)
					cancel()
					switch {
					case err == nil:
						t.Errorf("%s succeeded against a certificate it must refuse", op.name)
					case !tc.want(err) || !strings.Contains(err.Error(), tc.wantText):
						t.Errorf("%s: %v; want an error saying %q", op.name, err, tc.wantText)
					case errors.Is(err, backend.ErrNotFound):
						t.Errorf("%s: %v; a certificate failure is not a missing object", op.name, err)
					}
					if took > limit {
						t.Errorf("%s took %v to fail (limit %v): a certificate failure was retried", op.name, took.Round(time.Millisecond), limit)
					}
					t.Logf("%s failed after %v: %v", op.name, took.Round(time.Millisecond), err)
				}
			})
		}
	}
}

// TestWrongCredentials checks that a refused signature fails at once, is
// not mistaken for a missing object and does not repeat the secret.
func TestWrongCredentials(t *testing.T) {
	srv := plainServer.get(t)
	bucket := unique("creds")
	good := newS3(t, srv, bucket, "", nil)
	defer good.Close()
	if err := good.Put(t.Context(), "config", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, region := range []string{"", "us-east-1"} {
		cfg := srv.Config(bucket, "")
		cfg.SecretAccessKey = "not-the-secret-key"
		cfg.Region = region
		b, err := s3.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		for _, op := range []struct {
			name string
			fn   func(context.Context) error
		}{
			{"Put", func(ctx context.Context) error { return b.Put(ctx, "config", []byte("y")) }},
			{"Stat", func(ctx context.Context) error { _, err := b.Stat(ctx, "config"); return err }},
			{"Get", func(ctx context.Context) error { _, err := b.Get(ctx, "config"); return err }},
			{"Delete", func(ctx context.Context) error { return b.Delete(ctx, "config") }},
			{"List", func(ctx context.Context) error {
				return b.List(ctx, "", func(backend.Info) error { return nil })
			}},
		} {
			start := time.Now()
			err := op.fn(t.Context())
			took := time.Since(start)
			switch {
			case err == nil:
				t.Errorf("region %q: %s with a wrong secret key succeeded", region, op.name)
			case errors.Is(err, backend.ErrNotFound):
				t.Errorf("region %q: %s with a wrong secret key: %v; want an authentication error, not a missing object", region, op.name, err)
			case strings.Contains(err.Error(), cfg.SecretAccessKey):
				t.Errorf("region %q: %s: error %q repeats the secret key", region, op.name, err)
			}
			if took > 3*time.Second {
				t.Errorf("region %q: %s took %v to fail: an authentication failure was retried", region, op.name, took.Round(time.Millisecond))
			}
		}
	}
	got, err := backend.ReadAll(t.Context(), good, "config", 10)
	if err != nil || string(got) != "x" {
		t.Errorf("config after writes with a wrong key = %q, %v; want \"x\"", got, err)
	}
}

// TestAWSCABundle checks that a region without a CA file of its own trusts
// the CA named by AWS_CA_BUNDLE, as AWS tools do.
func TestAWSCABundle(t *testing.T) {
	srv := tlsServer.get(t)
	t.Setenv("AWS_CA_BUNDLE", srv.CACertFile)
	b := newS3(t, srv, unique("bundle"), "", func(c *s3.Config) { c.CACertFile = "" })
	defer b.Close()
	if err := b.Put(t.Context(), "config", []byte("x")); err != nil {
		t.Fatalf("Put trusting AWS_CA_BUNDLE: %v", err)
	}

	// A region's own CA file wins over AWS_CA_BUNDLE.
	notPEM := t.TempDir() + "/not-a-bundle"
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", notPEM)
	if _, err := s3.New(srv.Config("bundle", "")); err != nil {
		t.Errorf("New with CACertFile set looked at AWS_CA_BUNDLE: %v", err)
	}
	cfg := srv.Config("bundle", "")
	cfg.CACertFile = ""
	if _, err := s3.New(cfg); err == nil || !strings.Contains(err.Error(), "PEM") {
		t.Errorf("New with an AWS_CA_BUNDLE that holds no certificate = %v, want an error", err)
	}
}

func TestNotFound(t *testing.T) {
	srv := plainServer.get(t)
	b := newS3(t, srv, unique("notfound"), "repo", nil)
	defer b.Close()
	ctx := t.Context()

	_, err := b.Get(ctx, "snapshots/missing")
	checkNotFound(t, "Get", err, "snapshots/missing")
	_, err = b.Stat(ctx, "snapshots/missing")
	checkNotFound(t, "Stat", err, "snapshots/missing")
	_, err = b.Open(ctx, "snapshots/missing")
	checkNotFound(t, "Open", err, "snapshots/missing")
	checkNotFound(t, "Delete", b.Delete(ctx, "snapshots/missing"), "snapshots/missing")

	// An object deleted after Open: the next ranged read finds it missing.
	if err := b.Put(ctx, "data/ab/ab12", make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	obj, err := b.Open(ctx, "data/ab/ab12")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if err := b.Delete(ctx, "data/ab/ab12"); err != nil {
		t.Fatal(err)
	}
	_, err = obj.ReadAt(make([]byte, 10), 0)
	checkNotFound(t, "ReadAt after Delete", err, "data/ab/ab12")

	// A bucket that does not exist: not found, and the error says which.
	nob, err := s3.New(srv.Config(unique("no-such-bucket"), ""))
	if err != nil {
		t.Fatal(err)
	}
	defer nob.Close()
	_, err = nob.Stat(ctx, "config")
	checkNotFound(t, "Stat in a missing bucket", err, "config")
	if err != nil && !strings.Contains(err.Error(), "no-such-bucket") {
		t.Errorf("Stat in a missing bucket: %v does not name the bucket", err)
	}
}

func checkNotFound(t *testing.T, what string, err error, name string) {
	t.Helper()
	if !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("%s: %v, want an error wrapping backend.ErrNotFound", what, err)
	} else if !strings.Contains(err.Error(), name) {
		t.Errorf("%s: %v does not name %s", what, err, name)
	}
}

// countingTransport counts ListObjects requests.
type countingTransport struct {
	http.RoundTripper
	lists atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && req.URL.Query().Has("list-type") {
		c.lists.Add(1)
	}
	return c.RoundTripper.RoundTrip(req)
}

// TestListPagination lists more objects than one ListObjects page holds
// (1000) and checks that List followed the continuation tokens.
func TestListPagination(t *testing.T) {
	srv := plainServer.get(t)
	const n = 2345
	tr := &countingTransport{RoundTripper: http.DefaultTransport.(*http.Transport).Clone()}
	bucket := unique("pages")
	b := newS3(t, srv, bucket, "repo", func(c *s3.Config) { c.Transport = tr })
	defer b.Close()

	names := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for name := range names {
				if err := b.Put(t.Context(), name, []byte(name)); err != nil {
					t.Errorf("Put(%q): %v", name, err)
				}
			}
		})
	}
	want := make(map[string]int64, n)
	for i := range n {
		name := fmt.Sprintf("data/%02x/%05d", i%256, i)
		want[name] = int64(len(name))
		names <- name
	}
	close(names)
	wg.Wait()
	// Outside the listed prefix, and outside the region's prefix.
	if err := b.Put(t.Context(), "index/i1", []byte("i")); err != nil {
		t.Fatal(err)
	}
	root := newS3(t, srv, bucket, "", nil)
	defer root.Close()
	if err := root.Put(t.Context(), "repox/data/00/outside", []byte("o")); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	before := tr.lists.Load()
	got := make(map[string]int64)
	err := b.List(t.Context(), "data/", func(info backend.Info) error {
		if _, dup := got[info.Name]; dup {
			t.Errorf("List reported %q twice", info.Name)
		}
		got[info.Name] = info.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(got) != n {
		t.Errorf("List reported %d objects, want %d", len(got), n)
	}
	for name, size := range want {
		if got[name] != size {
			t.Errorf("List: %q has size %d, want %d", name, got[name], size)
			break
		}
	}
	if pages := tr.lists.Load() - before; pages < 3 {
		t.Errorf("List of %d objects made %d ListObjects requests, want at least 3 pages", n, pages)
	}

	// Stopping early ends the listing without reading further pages.
	before = tr.lists.Load()
	calls := 0
	errStop := errors.New("stop")
	err = b.List(t.Context(), "", func(backend.Info) error {
		calls++
		if calls == 1500 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || calls != 1500 {
		t.Errorf("List stopped by its callback = %v after %d calls, want errStop after 1500", err, calls)
	}
	if pages := tr.lists.Load() - before; pages > 3 {
		t.Errorf("List stopped after 1500 objects made %d ListObjects requests", pages)
	}
}

// TestObjectLock: in a bucket created with Object Lock, Puts of the names
// the lock covers store a retention of its mode until the period after the
// Put, so that no client can delete that version; other names are stored
// unlocked. A bucket created without Object Lock fails CheckLock with
// backend.ErrNoLock.
func TestObjectLock(t *testing.T) {
	srv := plainServer.get(t)
	ctx := t.Context()
	bucket := unique("locked")
	b, err := s3.New(srv.Config(bucket, "vb"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.EnsureBucket(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckLock(ctx); err != nil {
		t.Fatalf("a bucket created with Object Lock: %v", err)
	}
	for _, mode := range []string{backend.LockGovernance, backend.LockCompliance} {
		b.SetLock(backend.Lock{Mode: mode, Period: 36 * time.Hour, Prefixes: []string{"snapshots/"}})
		locked, free := "snapshots/"+mode, "keys/"+mode
		start := time.Now()
		for _, name := range []string{locked, free} {
			if err := b.Put(ctx, name, []byte("content of "+name)); err != nil {
				t.Fatalf("%s: put %s: %v", mode, name, err)
			}
		}
		c, err := srv.Client()
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.StatObject(ctx, bucket, "vb/"+locked, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		gotMode, until, err := c.GetObjectRetention(ctx, bucket, "vb/"+locked, info.VersionID)
		if err != nil || gotMode == nil || !strings.EqualFold(string(*gotMode), mode) {
			t.Fatalf("%s: retention of %s: %v, %v", mode, locked, gotMode, err)
		}
		if d := until.Sub(start); d < 36*time.Hour-time.Minute || d > 36*time.Hour+time.Minute {
			t.Errorf("%s: retained until %v, %v after the put; want 36h", mode, until, d)
		}
		err = c.RemoveObject(ctx, bucket, "vb/"+locked, minio.RemoveObjectOptions{VersionID: info.VersionID})
		if err == nil {
			t.Errorf("%s: the locked version of %s was deleted", mode, locked)
		}
		if m, _, _ := c.GetObjectRetention(ctx, bucket, "vb/"+free, ""); m != nil {
			t.Errorf("%s: %s, which the lock does not cover, is retained (%s)", mode, free, *m)
		}
	}

	plain := newS3(t, srv, unique("unlocked"), "", nil)
	defer plain.Close()
	if err := plain.CheckLock(ctx); !errors.Is(err, backend.ErrNoLock) {
		t.Errorf("a bucket created without Object Lock: CheckLock = %v, want ErrNoLock", err)
	}
}
