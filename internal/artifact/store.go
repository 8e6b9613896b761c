package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// ErrNotFound means the store holds no such artifact (never stored, or
// deleted with its job).
var ErrNotFound = errors.New("artifact not found")

// ErrBadID means a string is not an artifact id.
var ErrBadID = errors.New("not an artifact id")

// Object is what a backend keeps of a file besides its bytes.
type Object struct {
	ContentType string
	Size        int64
	SHA256      string
}

// Backend is where the bytes live. Keys are "<job id>/<name>".
type Backend interface {
	// Put stores data under key.
	Put(ctx context.Context, key string, data []byte, o Object) error
	// Get opens key; it returns ErrNotFound when there is none.
	Get(ctx context.Context, key string) (io.ReadCloser, Object, error)
	// DeletePrefix deletes every key that starts with prefix.
	DeletePrefix(ctx context.Context, prefix string) error
}

// Index remembers which jobs have artifacts and until when, so that they
// can be deleted with the job (internal/rdb's Artifacts).
type Index interface {
	// Track records that jobID has artifacts to delete at until.
	Track(ctx context.Context, jobID string, until time.Time) error
}

// Config shapes a Store.
type Config struct {
	// TTL is how long an artifact lives after it is stored: the job
	// records' retention (PAGEFLEET_RESULT_TTL).
	TTL time.Duration
	// Signer signs the artifacts' URLs.
	Signer *Signer
	// Index, when set, is told of every job that stored an artifact.
	Index Index
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Store keeps artifacts in a Backend.
type Store struct {
	b   Backend
	cfg Config
}

// New returns a store over b.
func New(b Backend, cfg Config) *Store {
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{b: b, cfg: cfg}
}

// Open returns a store over the backend that rawURL names:
// file:///dir or s3://bucket/prefix?endpoint=host:port (see OpenBackend).
func Open(rawURL string, cfg Config) (*Store, error) {
	b, err := OpenBackend(rawURL)
	if err != nil {
		return nil, err
	}
	return New(b, cfg), nil
}

// OpenBackend returns the backend rawURL names.
func OpenBackend(rawURL string) (Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("artifact store URL: %w", err)
	}
	switch u.Scheme {
	case "file":
		return NewFileBackend(u.Path)
	case "s3":
		return NewS3Backend(u)
	}
	return nil, fmt.Errorf("artifact store URL %q: scheme must be file or s3", rawURL)
}

// Signer is the store's signer (for the API, which checks signatures).
func (s *Store) Signer() *Signer { return s.cfg.Signer }

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CleanName turns any file name into a valid artifact name: characters
// other than A-Z a-z 0-9 . _ - become '_', a leading dot goes, and it is
// cut to 128 characters.
func CleanName(name string) string {
	b := []byte(name)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			b[i] = '_'
		}
	}
	n := strings.TrimLeft(string(b), "._-")
	if len(n) > 128 {
		n = n[len(n)-128:]
		n = strings.TrimLeft(n, "._-")
	}
	if n == "" {
		n = "file"
	}
	return n
}

// ID is the artifact id of a job's file.
func ID(jobID, name string) string { return jobID + "~" + name }

// ParseID splits an artifact id into its job id and name.
func ParseID(id string) (jobID, name string, err error) {
	jobID, name, ok := strings.Cut(id, "~")
	if !ok || jobID == "" || strings.ContainsAny(jobID, "/~.") || !nameRe.MatchString(name) {
		return "", "", ErrBadID
	}
	return jobID, name, nil
}

// Put stores data as the job's file name (see CleanName; a name already
// used by the job is replaced: callers pick distinct names, e.g.
// "screenshot.png", "download-2-report.pdf") and returns the artifact
// with a signed URL valid until it expires.
func (s *Store) Put(ctx context.Context, jobID, name, contentType string, data []byte) (spec.Artifact, error) {
	name = CleanName(name)
	id := ID(jobID, name)
	if _, _, err := ParseID(id); err != nil {
		return spec.Artifact{}, fmt.Errorf("artifact of job %q: %w", jobID, err)
	}
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	sum := sha256.Sum256(data)
	o := Object{ContentType: contentType, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	exp := s.cfg.Now().Add(s.cfg.TTL).UTC().Truncate(time.Second)
	if s.cfg.Index != nil {
		// First the index: a file stored but not indexed would never go.
		if err := s.cfg.Index.Track(ctx, jobID, exp); err != nil {
			return spec.Artifact{}, fmt.Errorf("index artifact %s: %w", id, err)
		}
	}
	if err := s.b.Put(ctx, jobID+"/"+name, data, o); err != nil {
		return spec.Artifact{}, fmt.Errorf("store artifact %s: %w", id, err)
	}
	a := spec.Artifact{ID: id, Size: o.Size, SHA256: o.SHA256, ContentType: contentType, ExpiresAt: exp}
	if s.cfg.Signer != nil {
		a.URL = s.cfg.Signer.URL(id, exp)
	}
	return a, nil
}

// Get opens the artifact id; the caller closes the reader.
func (s *Store) Get(ctx context.Context, id string) (io.ReadCloser, Object, error) {
	jobID, name, err := ParseID(id)
	if err != nil {
		return nil, Object{}, err
	}
	return s.b.Get(ctx, jobID+"/"+name)
}

// Bytes reads the whole artifact id.
func (s *Store) Bytes(ctx context.Context, id string) ([]byte, error) {
	rc, _, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, rc); err != nil {
		return nil, fmt.Errorf("read artifact %s: %w", id, err)
	}
	return buf.Bytes(), nil
}

// DeleteJob deletes every artifact of the job. Deleting a job without
// artifacts, or twice, is no error.
func (s *Store) DeleteJob(ctx context.Context, jobID string) error {
	if jobID == "" || strings.ContainsAny(jobID, "/~.") {
		return ErrBadID
	}
	if err := s.b.DeletePrefix(ctx, jobID+"/"); err != nil {
		return fmt.Errorf("delete artifacts of job %s: %w", jobID, err)
	}
	return nil
}

// Fleet is what a binary's store is made with besides its settings: the
// index of jobs with artifacts, and the fleet's signing secret when the
// operator set none (internal/rdb's Artifacts).
type Fleet interface {
	Index
	DueIndex
	Secret(ctx context.Context) ([]byte, error)
}

// Settings are the operator's artifact settings (package config).
type Settings struct {
	URL       string
	Secret    []byte
	PublicURL string
	TTL       time.Duration
}

// OpenFleet opens the store that the API and the workers of one fleet
// share: set's backend, signed with set's secret (or the fleet's), jobs
// indexed in f.
func OpenFleet(ctx context.Context, set Settings, f Fleet) (*Store, error) {
	secret := set.Secret
	if len(secret) == 0 {
		var err error
		if secret, err = f.Secret(ctx); err != nil {
			return nil, fmt.Errorf("artifact signing secret: %w", err)
		}
	}
	b, err := OpenBackend(set.URL)
	if err != nil {
		return nil, err
	}
	if s3, ok := b.(*S3Backend); ok {
		// Fail at start, not at the first job, when the bucket cannot be
		// reached (it is made when missing and the credentials may).
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := s3.EnsureBucket(cctx); err != nil {
			return nil, fmt.Errorf("artifact store bucket %q: %w", s3.bucket, err)
		}
	}
	return New(b, Config{TTL: set.TTL, Signer: NewSigner(secret, set.PublicURL, nil), Index: f}), nil
}
