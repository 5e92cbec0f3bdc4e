package s3

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"vaultbak/backend"
)

// Config describes one S3 region.
type Config struct {
	Endpoint string // host[:port]
	Bucket   string
	Prefix   string // key prefix inside the bucket, without slashes at the ends
	Secure   bool   // HTTPS

	// Credentials: static keys when AccessKeyID is set, else the standard
	// AWS environment variables and shared credentials file.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string

	Region     string // the bucket's region; "" lets the client find out
	CACertFile string // extra trusted CA (PEM) for this region
	MaxRetries int    // per request; 0: minio-go's default (10)

	// Transport overrides the HTTP transport (tests, fault proxies).
	Transport http.RoundTripper
}

// S3 is a backend.Backend on an S3 bucket.
type S3 struct {
	client *minio.Client
	core   *minio.Core
	cfg    Config
}

var _ backend.Backend = (*S3)(nil)

// ParseURL parses a region URL: s3://host[:port]/bucket[/prefix] (HTTPS) or
// s3+http://host[:port]/bucket[/prefix] (plain HTTP, allowed only to a
// loopback host unless allowInsecure).
func ParseURL(raw string, allowInsecure bool) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("s3: bad url %q: %w", raw, err)
	}
	var c Config
	switch u.Scheme {
	case "s3", "s3+https":
		c.Secure = true
	case "s3+http":
		if !allowInsecure && !isLoopback(u.Hostname()) {
			return Config{}, fmt.Errorf("s3: %s uses plain HTTP to a non-loopback host; credentials and metadata would cross the network in clear (set allow_insecure_http only if you must)", raw)
		}
	default:
		return Config{}, fmt.Errorf("s3: url %q: scheme must be s3:// (HTTPS) or s3+http:// (loopback)", raw)
	}
	if u.User != nil {
		return Config{}, errors.New("s3: credentials do not belong in a region URL; use access_key_id_env/secret_access_key_env")
	}
	if u.Host == "" {
		return Config{}, fmt.Errorf("s3: url %q has no host", raw)
	}
	c.Endpoint = u.Host
	parts := strings.SplitN(strings.Trim(u.Path, "/"), "/", 2)
	if parts[0] == "" {
		return Config{}, fmt.Errorf("s3: url %q has no bucket", raw)
	}
	if len(parts[0]) < 3 {
		return Config{}, fmt.Errorf("s3: bucket name %q is shorter than 3 characters", parts[0])
	}
	c.Bucket = parts[0]
	if len(parts) == 2 {
		c.Prefix = strings.Trim(parts[1], "/")
	}
	return c, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// New connects to the bucket's endpoint (no request is made yet).
func New(cfg Config) (*S3, error) {
	tr := cfg.Transport
	if tr == nil {
		t, err := transport(cfg)
		if err != nil {
			return nil, err
		}
		tr = t
	}
	var creds *credentials.Credentials
	if cfg.AccessKeyID != "" {
		creds = credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}})
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      creds,
		Secure:     cfg.Secure,
		Transport:  tr,
		Region:     cfg.Region,
		MaxRetries: cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	return &S3{client: client, core: &minio.Core{Client: client}, cfg: cfg}, nil
}

// transport returns an HTTP transport that trusts the system roots plus the
// region's CA file, or AWS_CA_BUNDLE when the region names none.
func transport(cfg Config) (*http.Transport, error) {
	t, err := minio.DefaultTransport(cfg.Secure)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	t.ResponseHeaderTimeout = 2 * time.Minute
	if !cfg.Secure {
		return t, nil
	}
	caFile := cfg.CACertFile
	if caFile == "" {
		caFile = os.Getenv("AWS_CA_BUNDLE")
	}
	if caFile == "" {
		return t, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("s3: CA certificate: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("s3: CA certificate file %s holds no PEM certificate", caFile)
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t.TLSClientConfig.RootCAs = pool
	return t, nil
}

// Location names the region's bucket and prefix.
func (s *S3) Location() string {
	scheme := "s3"
	if !s.cfg.Secure {
		scheme = "s3+http"
	}
	return scheme + "://" + path.Join(s.cfg.Endpoint, s.cfg.Bucket, s.cfg.Prefix)
}

func (s *S3) key(name string) string {
	if s.cfg.Prefix == "" {
		return name
	}
	return s.cfg.Prefix + "/" + name
}

// EnsureBucket creates the bucket when it does not exist.
func (s *S3) EnsureBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("s3: bucket %s: %w", s.cfg.Bucket, err)
	}
	if ok {
		return nil
	}
	if err := s.client.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region}); err != nil {
		return fmt.Errorf("s3: create bucket %s: %w", s.cfg.Bucket, err)
	}
	return nil
}

// wrap turns a minio error into a backend error naming the object.
func (s *S3) wrap(op, name string, err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("s3: %s %s: %w", op, name, backend.ErrNotFound)
	case "NoSuchBucket":
		return fmt.Errorf("s3: %s %s: bucket %s does not exist: %w", op, name, s.cfg.Bucket, backend.ErrNotFound)
	}
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("s3: %s %s: %w", op, name, backend.ErrNotFound)
	}
	return fmt.Errorf("s3: %s %s: %w", op, name, err)
}

// Put uploads data in one request with its MD5, so the server rejects a
// body damaged in transit.
func (s *S3) Put(ctx context.Context, name string, data []byte) error {
	if err := backend.ValidName(name); err != nil {
		return err
	}
	_, err := s.client.PutObject(ctx, s.cfg.Bucket, s.key(name), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		SendContentMd5:   true,
		DisableMultipart: true,
	})
	return s.wrap("put", name, err)
}

// Stat returns the object's size.
func (s *S3) Stat(ctx context.Context, name string) (backend.Info, error) {
	if err := backend.ValidName(name); err != nil {
		return backend.Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.cfg.Bucket, s.key(name), minio.StatObjectOptions{})
	if err != nil {
		return backend.Info{}, s.wrap("stat", name, err)
	}
	return backend.Info{Name: name, Size: oi.Size}, nil
}

// Get streams the whole object.
func (s *S3) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := backend.ValidName(name); err != nil {
		return nil, err
	}
	rc, _, _, err := s.core.GetObject(ctx, s.cfg.Bucket, s.key(name), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", name, err)
	}
	return rc, nil
}

// object reads ranges of one object; each ReadAt is one ranged GET.
type object struct {
	s    *S3
	ctx  context.Context
	name string
	size int64
}

func (o *object) Size() int64  { return o.size }
func (o *object) Close() error { return nil }

func (o *object) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("s3: read %s: negative offset", o.name)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), o.size-off)
	if want == 0 {
		return 0, nil
	}
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+want-1); err != nil {
		return 0, err
	}
	rc, _, _, err := o.s.core.GetObject(o.ctx, o.s.cfg.Bucket, o.s.key(o.name), opts)
	if err != nil {
		return 0, o.s.wrap("read", o.name, err)
	}
	defer rc.Close()
	n, err := io.ReadFull(rc, p[:want])
	if err != nil {
		return n, fmt.Errorf("s3: read %s: %w", o.name, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Open returns the object for ranged reads; ctx bounds those reads.
func (s *S3) Open(ctx context.Context, name string) (backend.Object, error) {
	fi, err := s.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	return &object{s: s, ctx: context.WithoutCancel(ctx), name: name, size: fi.Size}, nil
}

// List lists the objects under prefix, following continuation pages.
func (s *S3) List(ctx context.Context, prefix string, fn func(backend.Info) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	base := s.key("")
	for oi := range s.client.ListObjectsIter(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.key(prefix), Recursive: true}) {
		if oi.Err != nil {
			return s.wrap("list", prefix, oi.Err)
		}
		name := strings.TrimPrefix(oi.Key, base)
		if s.cfg.Prefix == "" {
			name = oi.Key
		}
		if backend.ValidName(name) != nil {
			continue
		}
		if err := fn(backend.Info{Name: name, Size: oi.Size}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Delete removes an object; a missing one is ErrNotFound.
func (s *S3) Delete(ctx context.Context, name string) error {
	if _, err := s.Stat(ctx, name); err != nil {
		return err
	}
	return s.wrap("delete", name, s.client.RemoveObject(ctx, s.cfg.Bucket, s.key(name), minio.RemoveObjectOptions{}))
}

// Close releases idle connections.
func (s *S3) Close() error { return nil }
