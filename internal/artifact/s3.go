package artifact

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Backend keeps artifacts in a bucket of any S3-compatible store, under
// a key prefix, through the MinIO client.
type S3Backend struct {
	c      *minio.Client
	bucket string
	prefix string
}

// NewS3Backend returns the backend of u: s3://bucket/prefix?endpoint=…
// The endpoint is host:port, or a URL whose scheme says http or https
// (https without one); region= names the region (default us-east-1). The
// credentials come from the environment: AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (or MINIO_ROOT_USER and MINIO_ROOT_PASSWORD), else
// an instance role.
func NewS3Backend(u *url.URL) (*S3Backend, error) {
	bucket := u.Host
	if bucket == "" {
		return nil, fmt.Errorf("artifact store URL: s3://bucket/prefix needs a bucket")
	}
	q := u.Query()
	endpoint, secure := q.Get("endpoint"), true
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
	}
	if e, err := url.Parse(endpoint); err == nil && (e.Scheme == "http" || e.Scheme == "https") {
		endpoint, secure = e.Host, e.Scheme == "https"
	}
	region := q.Get("region")
	if region == "" {
		region = "us-east-1"
	}
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.IAM{},
	})
	c, err := minio.New(endpoint, &minio.Options{Creds: creds, Secure: secure, Region: region})
	if err != nil {
		return nil, fmt.Errorf("artifact store: %w", err)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &S3Backend{c: c, bucket: bucket, prefix: prefix}, nil
}

const shaMeta = "Sha256"

// Put implements Backend.
func (s *S3Backend) Put(ctx context.Context, key string, data []byte, o Object) error {
	_, err := s.c.PutObject(ctx, s.bucket, s.prefix+key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		ContentType:  o.ContentType,
		UserMetadata: map[string]string{shaMeta: o.SHA256},
	})
	return err
}

// Get implements Backend.
func (s *S3Backend) Get(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	obj, err := s.c.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, Object{}, notFound(err)
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, Object{}, notFound(err)
	}
	o := Object{ContentType: info.ContentType, Size: info.Size, SHA256: info.UserMetadata[shaMeta]}
	return obj, o, nil
}

func notFound(err error) error {
	if r := minio.ToErrorResponse(err); r.Code == minio.NoSuchKey || r.StatusCode == 404 {
		return ErrNotFound
	}
	return err
}

// DeletePrefix implements Backend.
func (s *S3Backend) DeletePrefix(ctx context.Context, prefix string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	objs := s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true})
	var listErr error
	ch := make(chan minio.ObjectInfo)
	go func() {
		defer close(ch)
		for o := range objs {
			if o.Err != nil {
				listErr = o.Err
				return
			}
			ch <- o
		}
	}()
	for e := range s.c.RemoveObjects(ctx, s.bucket, ch, minio.RemoveObjectsOptions{}) {
		if e.Err != nil && notFound(e.Err) != ErrNotFound {
			cancel()
			for range ch {
			}
			return fmt.Errorf("remove %s: %w", e.ObjectName, e.Err)
		}
	}
	return listErr
}

// EnsureBucket creates the bucket when it does not exist (for tests and
// first runs; an operator usually creates it).
func (s *S3Backend) EnsureBucket(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil || ok {
		return err
	}
	return s.c.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{})
}
