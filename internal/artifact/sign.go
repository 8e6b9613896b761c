package artifact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Errors of Signer.Verify.
var (
	// ErrBadSignature: the link's signature is missing or not the
	// server's (the API answers 403).
	ErrBadSignature = errors.New("artifact link signature is not valid")
	// ErrLinkExpired: the link was signed but its time is up (the API
	// answers 410).
	ErrLinkExpired = errors.New("artifact link has expired")
)

// Signer signs and checks artifact links: "<base>/v1/artifacts/<id>?
// expires=<unix seconds>&sig=<base64url HMAC-SHA256 of "<id>\n<expires>">".
type Signer struct {
	secret []byte
	base   string
	now    func() time.Time
}

// NewSigner signs with secret. base is the API's address as clients reach
// it ("https://fetch.example.com"); "" makes links paths ("/v1/…") that the
// API completes with the Host of each request it answers.
func NewSigner(secret []byte, base string, now func() time.Time) *Signer {
	if now == nil {
		now = time.Now
	}
	return &Signer{secret: secret, base: strings.TrimRight(base, "/"), now: now}
}

// Path is the API path of artifact id.
func Path(id string) string { return "/v1/artifacts/" + url.PathEscape(id) }

// Sign returns the signature of id until exp.
func (s *Signer) Sign(id string, exp time.Time) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(id + "\n" + strconv.FormatInt(exp.Unix(), 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// URL is the signed link to artifact id, valid until exp.
func (s *Signer) URL(id string, exp time.Time) string {
	q := url.Values{}
	q.Set("expires", strconv.FormatInt(exp.Unix(), 10))
	q.Set("sig", s.Sign(id, exp))
	return s.base + Path(id) + "?" + q.Encode()
}

// Verify checks a link's expires and sig query values for id.
func (s *Signer) Verify(id, expires, sig string) error {
	n, err := strconv.ParseInt(expires, 10, 64)
	if err != nil || sig == "" {
		return ErrBadSignature
	}
	want := s.Sign(id, time.Unix(n, 0))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return ErrBadSignature
	}
	if !s.now().Before(time.Unix(n, 0)) {
		return ErrLinkExpired
	}
	return nil
}
