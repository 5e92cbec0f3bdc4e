// Package s3 is the backend for S3-compatible object storage, built on
// minio-go.
//
// Object "a/b" of a region lives at key "<prefix>/a/b" in the region's
// bucket. Transport security is the caller's choice through Config.Secure;
// the region URL rules (https by default, plain http only to loopback unless
// explicitly allowed) are enforced by ParseURL. Certificates are verified
// against the system pool plus Config.CACertFile, or AWS_CA_BUNDLE when set,
// as AWS tools do.
//
// Retries: minio-go's own retry (exponential backoff with full jitter on
// 5xx, SlowDown, throttling and timeouts; never on 4xx auth or not-found) is
// the only retry layer for S3 regions, configured by Config.MaxRetries. A
// failed certificate verification ends an operation at once: minio-go would
// retry it (it does not recognise Go's *tls.CertificateVerificationError),
// so the transport cancels the operation's context with the failure as its
// cause, and the error returned is that failure.
//
// Leftovers: Put is one PutObject request through minio.Core, never a
// multipart upload, and S3 stages nothing (it is no backend.Stager), so an
// interrupted write leaves no temporary object and no incomplete multipart
// upload behind; S3 is no backend.Sweeper. Should packs ever go up in
// parts, stale incomplete uploads (ListIncompleteUploads) would need
// aborting the way a local region sweeps its temporary files.
package s3
