package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

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
	idle   *http.Transport // the transport New made, nil for Config.Transport

	locMu   sync.Mutex
	located bool // the bucket's region is known to the client

	lock atomic.Pointer[backend.Lock] // set by SetLock
}

var (
	_ backend.Backend = (*S3)(nil)
	_ backend.Locker  = (*S3)(nil)
)

// ParseURL parses a region URL: s3://host[:port]/bucket[/prefix] (HTTPS) or
// s3+http://host[:port]/bucket[/prefix] (plain HTTP, allowed only to a
// loopback host unless allowInsecure). The bucket must be a valid S3 bucket
// name and the prefix a valid object name (backend.ValidName). Credentials
// in the URL are refused, and no error repeats them.
func ParseURL(raw string, allowInsecure bool) (Config, error) {
	shown := redactURL(raw)
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // ue.URL is raw, credentials and all
		}
		return Config{}, fmt.Errorf("s3: bad url %q: %w", shown, err)
	}
	var c Config
	switch u.Scheme {
	case "s3", "s3+https":
		c.Secure = true
	case "s3+http":
	default:
		return Config{}, fmt.Errorf("s3: url %q: scheme must be s3:// (HTTPS) or s3+http:// (loopback)", shown)
	}
	if u.User != nil {
		return Config{}, errors.New("s3: credentials do not belong in a region URL; use access_key_id_env/secret_access_key_env")
	}
	if u.Hostname() == "" {
		return Config{}, fmt.Errorf("s3: url %q has no host", shown)
	}
	if !c.Secure && !allowInsecure && !isLoopback(u.Hostname()) {
		return Config{}, fmt.Errorf("s3: %s uses plain HTTP to a non-loopback host; credentials and metadata would cross the network in clear (set allow_insecure_http only if you must)", shown)
	}
	c.Endpoint = u.Host
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if bucket == "" {
		return Config{}, fmt.Errorf("s3: url %q has no bucket", shown)
	}
	if len(bucket) < 3 {
		return Config{}, fmt.Errorf("s3: bucket name %q is shorter than 3 characters", bucket)
	}
	if err := s3utils.CheckValidBucketName(bucket); err != nil {
		return Config{}, fmt.Errorf("s3: bucket name %q is not valid: %s", bucket, strings.ToLower(err.Error()))
	}
	c.Bucket = bucket
	if prefix = strings.TrimRight(prefix, "/"); prefix != "" {
		// Keys are prefix + "/" + object name: the prefix follows the
		// rules of object names, so every key is one.
		if backend.ValidName(prefix) != nil {
			return Config{}, fmt.Errorf("s3: url %q: prefix %q has an empty, \".\" or \"..\" element", shown, prefix)
		}
		c.Prefix = prefix
	}
	return c, nil
}

// redactURL hides the user information of a URL, even one that does not
// parse, so that an error message never repeats a secret.
func redactURL(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return raw
	}
	start := len(raw) - len(rest)
	return raw[:start] + "xxxxx" + raw[start+at:]
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
	var own *http.Transport
	tr := cfg.Transport
	if tr == nil {
		t, err := transport(cfg)
		if err != nil {
			return nil, err
		}
		own, tr = t, t
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
		Transport:  failFast{tr},
		Region:     cfg.Region,
		MaxRetries: cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	return &S3{client: client, core: &minio.Core{Client: client}, cfg: cfg, idle: own}, nil
}

// failFast ends minio-go's retries at the first certificate failure.
//
// minio-go retries every transport error except a bare
// x509.UnknownAuthorityError, but Go's TLS client wraps every verification
// failure in *tls.CertificateVerificationError, so an untrusted, expired or
// misnamed certificate would be retried MaxRetries times with backoff (4 to
// 8 s with the defaults) before the error surfaces, although no retry can
// make a certificate valid. So every operation runs under a context from
// begin; when a request fails certificate verification, failFast cancels
// that context with the failure as its cause, which ends the retry loop at
// once, and certCause reports the failure instead of the cancellation.
type failFast struct{ http.RoundTripper }

// cancelKey is the context key of an operation's cancel function.
type cancelKey struct{}

func (f failFast) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := f.RoundTripper.RoundTrip(req)
	if err != nil && errors.As(err, new(*tls.CertificateVerificationError)) {
		if cancel, ok := req.Context().Value(cancelKey{}).(context.CancelCauseFunc); ok {
			// As net/http reports it: `Get "https://…": tls: …`.
			op := "Get"
			if m := req.Method; m != "" {
				op = m[:1] + strings.ToLower(m[1:])
			}
			cancel(&url.Error{Op: op, URL: req.URL.Redacted(), Err: err})
		}
	}
	return resp, err
}

// begin starts one operation of s: see the function begin. Before the
// first operation it makes sure the client knows the bucket's region.
func (s *S3) begin(ctx context.Context) (context.Context, func()) {
	ctx, done := begin(ctx)
	s.locate(ctx)
	return ctx, done
}

// Lookup of the bucket's region: minio-go asks the endpoint before the
// first request to a bucket whose region the config does not give, and that
// one request is not retried on a reset connection or a bare 5xx (what a
// load balancer answers). locate makes that lookup itself, with backoff and
// jitter, until it succeeds (minio-go then caches the answer) or fails in a
// way a retry cannot mend; the operation that follows reports any failure.
const (
	locateAttempts = 8
	locateBase     = 200 * time.Millisecond
	locateCap      = 2 * time.Second
)

func (s *S3) locate(ctx context.Context) {
	s.locMu.Lock()
	defer s.locMu.Unlock()
	if s.located || s.cfg.Region != "" {
		return
	}
	for attempt := range locateAttempts {
		if attempt > 0 {
			d := min(locateCap, locateBase<<attempt)
			d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		_, err := s.client.GetBucketLocation(ctx, s.cfg.Bucket)
		if err == nil {
			s.located = true
			return
		}
		if !retryable(ctx, err) {
			return
		}
	}
}

// retryable decides, for the one request vaultbak retries itself (the
// bucket region lookup), whether another try can help: not after the
// operation ended, a certificate failure or a 4xx answer (auth, not found),
// but yes after a transport error, a timeout, 429 or a 5xx.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return true
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return false
	}
	return true
}

// begin returns the context of one operation, which failFast can end, and
// the function that releases it.
func begin(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	return context.WithValue(ctx, cancelKey{}, cancel), func() { cancel(nil) }
}

// certCause returns the certificate failure that ended the operation of
// ctx, if one did, else err.
func certCause(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && errors.As(cause, new(*tls.CertificateVerificationError)) {
		return cause
	}
	return err
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

// EnsureBucket creates the bucket when it does not exist, with Object Lock
// (and so versioning) enabled when objectLock is set.
func (s *S3) EnsureBucket(ctx context.Context, objectLock bool) error {
	ctx, done := s.begin(ctx)
	defer done()
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("s3: bucket %s: %w", s.cfg.Bucket, certCause(ctx, err))
	}
	if ok {
		return nil
	}
	if err := s.client.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region, ObjectLocking: objectLock}); err != nil {
		return fmt.Errorf("s3: create bucket %s: %w", s.cfg.Bucket, certCause(ctx, err))
	}
	return nil
}

// SetLock makes later Puts of the names l covers store them under an
// Object Lock retention of l.Mode until l.Period after the Put.
func (s *S3) SetLock(l backend.Lock) { s.lock.Store(&l) }

// CheckLock returns an error unless the bucket has Object Lock enabled,
// which S3 allows only when the bucket is created.
func (s *S3) CheckLock(ctx context.Context) error {
	ctx, done := s.begin(ctx)
	defer done()
	enabled, _, _, _, err := s.client.GetObjectLockConfig(ctx, s.cfg.Bucket)
	if err != nil {
		var er minio.ErrorResponse
		if errors.As(err, &er) && er.Code == "ObjectLockConfigurationNotFoundError" {
			return fmt.Errorf("s3: bucket %s was created without Object Lock: %w", s.cfg.Bucket, backend.ErrNoLock)
		}
		return fmt.Errorf("s3: bucket %s: Object Lock configuration: %w", s.cfg.Bucket, certCause(ctx, err))
	}
	if enabled != "Enabled" {
		return fmt.Errorf("s3: bucket %s was created without Object Lock: %w", s.cfg.Bucket, backend.ErrNoLock)
	}
	return nil
}

// wrap turns a minio error of the operation under ctx into a backend error
// naming the object.
func (s *S3) wrap(ctx context.Context, op, name string, err error) error {
	if err == nil {
		return nil
	}
	err = certCause(ctx, err)
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

// Put uploads data in one request carrying its SHA-256, which the server
// checks, so a body damaged in transit is refused. Packs, index and key
// files are named by that hash already: it is taken from the name, so
// uploading one object to several regions hashes it once, not once per
// region (and a name that does not match its bytes is refused too).
func (s *S3) Put(ctx context.Context, name string, data []byte) error {
	if err := backend.ValidName(name); err != nil {
		return err
	}
	sum := nameHash(name)
	if sum == "" {
		h := sha256.Sum256(data)
		sum = hex.EncodeToString(h[:])
	}
	ctx, done := s.begin(ctx)
	defer done()
	// DisableContentSha256 keeps the client from re-hashing the body in
	// signed 64 KiB chunks over plain HTTP (the streaming signature); the
	// SHA-256 given here goes into the signed X-Amz-Content-Sha256 header
	// instead, and the server still checks the body against it.
	opts := minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		DisableContentSha256: true,
	}
	if l := s.lock.Load(); l != nil && l.Covers(name) {
		opts.Mode = minio.Governance
		if l.Mode == backend.LockCompliance {
			opts.Mode = minio.Compliance
		}
		opts.RetainUntilDate = time.Now().Add(l.Period)
		// S3 wants a Content-MD5 or checksum header on a put that locks;
		// CRC-32C is the cheap one (the SHA-256 above is what protects).
		crc := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
		opts.UserMetadata = map[string]string{"x-amz-checksum-crc32c": base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc))}
	}
	_, err := s.core.PutObject(ctx, s.cfg.Bucket, s.key(name), bytes.NewReader(data), int64(len(data)), "", sum, opts)
	return s.wrap(ctx, "put", name, err)
}

// nameHash returns the SHA-256 an object name states (data/XX/<hash>,
// index/<hash>, keys/<hash>), or "".
func nameHash(name string) string {
	for _, p := range []string{"data/", "index/", "keys/"} {
		if strings.HasPrefix(name, p) {
			h := path.Base(name)
			if _, err := hex.DecodeString(h); err == nil && len(h) == 64 {
				return h
			}
		}
	}
	return ""
}

// Stat returns the object's size.
func (s *S3) Stat(ctx context.Context, name string) (backend.Info, error) {
	if err := backend.ValidName(name); err != nil {
		return backend.Info{}, err
	}
	ctx, done := s.begin(ctx)
	defer done()
	oi, err := s.client.StatObject(ctx, s.cfg.Bucket, s.key(name), minio.StatObjectOptions{})
	if err != nil {
		return backend.Info{}, s.wrap(ctx, "stat", name, err)
	}
	return backend.Info{Name: name, Size: oi.Size}, nil
}

// Get streams the whole object.
func (s *S3) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := backend.ValidName(name); err != nil {
		return nil, err
	}
	ctx, done := s.begin(ctx)
	rc, _, _, err := s.core.GetObject(ctx, s.cfg.Bucket, s.key(name), minio.GetObjectOptions{})
	if err != nil {
		err = s.wrap(ctx, "get", name, err)
		done()
		return nil, err
	}
	return &body{ReadCloser: rc, done: done}, nil
}

// body is an object's content being streamed; Close ends its operation.
type body struct {
	io.ReadCloser
	done func()
}

func (b *body) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}

// object reads ranges of one object: each ReadAt is one ranged GET, each
// Stream one GET of the range that the caller reads as it goes.
type object struct {
	s    *S3
	ctx  context.Context
	name string
	size int64
}

var (
	_ backend.SizedOpener = (*S3)(nil)
	_ backend.Streamer    = (*object)(nil)
)

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
	rc, err := o.Stream(off, off+want)
	if err != nil {
		return 0, err
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

// Stream returns the bytes [off, end) of the object from one ranged GET.
// The response states the object's stored size (Content-Range), which is
// checked against o.size: an object opened by OpenSized is not stat'ed.
func (o *object) Stream(off, end int64) (io.ReadCloser, error) {
	if off < 0 || off >= end || end > o.size {
		return nil, fmt.Errorf("s3: read %s: range %d-%d outside the object's %d bytes", o.name, off, end, o.size)
	}
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, end-1); err != nil {
		return nil, err
	}
	ctx, done := begin(o.ctx)
	rc, _, hdr, err := o.s.core.GetObject(ctx, o.s.cfg.Bucket, o.s.key(o.name), opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "InvalidRange" {
			// The range lies within the expected size but not within
			// the stored object: it is shorter.
			err = fmt.Errorf("s3: read %s: %w", o.name, backend.ErrWrongSize)
		} else {
			err = o.s.wrap(ctx, "read", o.name, err)
		}
		done()
		return nil, err
	}
	if total, ok := contentRangeSize(hdr.Get("Content-Range")); ok && total != o.size {
		rc.Close()
		done()
		return nil, fmt.Errorf("s3: read %s: %w (%d bytes stored, %d expected)", o.name, backend.ErrWrongSize, total, o.size)
	}
	return &body{ReadCloser: rc, done: done}, nil
}

// contentRangeSize returns the complete length a Content-Range header
// ("bytes 0-99/1234") states.
func contentRangeSize(v string) (int64, bool) {
	_, total, ok := strings.Cut(v, "/")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil
}

// Open returns the object for ranged reads. The reads carry ctx's values but
// not its cancellation or deadline: the object may outlive the call that
// opened it (the repository's pack cache keeps objects open across calls).
func (s *S3) Open(ctx context.Context, name string) (backend.Object, error) {
	fi, err := s.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	return &object{s: s, ctx: context.WithoutCancel(ctx), name: name, size: fi.Size}, nil
}

// OpenSized is Open without the stat: the caller knows the size, and every
// read checks it (see object.Stream); a missing object is reported by the
// first read.
func (s *S3) OpenSized(ctx context.Context, name string, size int64) (backend.Object, error) {
	if err := backend.ValidName(name); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("s3: open %s: negative size", name)
	}
	_, done := s.begin(ctx) // learns the bucket's region, as every operation does
	defer done()
	return &object{s: s, ctx: context.WithoutCancel(ctx), name: name, size: size}, nil
}

// List lists the objects under prefix, following continuation pages.
func (s *S3) List(ctx context.Context, prefix string, fn func(backend.Info) error) error {
	ctx, done := s.begin(ctx) // also ends the listing goroutine when fn fails
	defer done()
	base := s.key("")
	for oi := range s.client.ListObjectsIter(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.key(prefix), Recursive: true}) {
		if oi.Err != nil {
			return s.wrap(ctx, "list", prefix, oi.Err)
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
	return certCause(ctx, ctx.Err())
}

// Delete removes an object; a missing one is ErrNotFound.
func (s *S3) Delete(ctx context.Context, name string) error {
	if _, err := s.Stat(ctx, name); err != nil {
		return err
	}
	ctx, done := s.begin(ctx)
	defer done()
	return s.wrap(ctx, "delete", name, s.client.RemoveObject(ctx, s.cfg.Bucket, s.key(name), minio.RemoveObjectOptions{}))
}

// Close releases idle connections of the transport New made.
func (s *S3) Close() error {
	if s.idle != nil {
		s.idle.CloseIdleConnections()
	}
	return nil
}
