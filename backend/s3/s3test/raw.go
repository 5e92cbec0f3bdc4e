package s3test

import (
	"bytes"
	"context"
	"fmt"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Client returns a plain S3 client with the server's root credentials:
// what any S3 tool holding them can do, for tests to look at objects (their
// versions and locks) and to damage them.
func (s *Server) Client() (*minio.Client, error) {
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:    s.Secure,
		Transport: s.health.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	return c, nil
}

// PutRaw stores data under key in bucket as any S3 client with the
// server's credentials could, without the checks vaultbak's backend makes
// (a hash-named object whose bytes match its name): tests use it to plant
// damaged or forged objects.
func (s *Server) PutRaw(ctx context.Context, bucket, key string, data []byte) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	if _, err := c.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		return fmt.Errorf("s3test: put %s/%s: %w", bucket, key, err)
	}
	return nil
}
