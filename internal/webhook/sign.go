package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Tolerance is how far a webhook-timestamp may be from the receiver's clock,
// in either direction, for [Verify] to accept it.
const Tolerance = 5 * time.Minute

// SecretPrefix starts every webhook secret.
const SecretPrefix = "whsec_"

// Errors of [Sign] and [Verify].
var (
	ErrInvalidSecret     = errors.New("webhook secret is not whsec_<base64 key>")
	ErrMissingHeaders    = errors.New("missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrInvalidTimestamp  = errors.New("webhook-timestamp is not unix seconds")
	ErrTimestampTooOld   = errors.New("webhook-timestamp is too old")
	ErrTimestampTooNew   = errors.New("webhook-timestamp is too far in the future")
	ErrSignatureMismatch = errors.New("no webhook-signature matches")
)

// secretKey decodes "whsec_<base64 key>" (the prefix is optional, as in the
// reference libraries) into the HMAC key.
func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) == 0 {
		return nil, ErrInvalidSecret
	}
	return key, nil
}

// signature is the base64 HMAC-SHA256 of "id.timestamp.body".
func signature(key []byte, id string, unix int64, body []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, unix, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// Sign returns the Standard Webhooks signature header value
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>", where timestamp is ts in
// unix seconds and the key is the base64-decoded part of secret after
// "whsec_".
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + signature(key, id, ts.Unix(), body), nil
}

// Verify checks a delivery received with headers h and body: webhook-id,
// webhook-timestamp (within [Tolerance] of now) and webhook-signature, a
// space-separated list of which any one "v1,<signature>" must match. It
// returns nil or an error wrapping one of the Err… values above.
func Verify(secret string, h http.Header, body []byte) error {
	key, err := secretKey(secret)
	if err != nil {
		return err
	}
	id, tsHeader, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsHeader == "" || sigs == "" {
		return ErrMissingHeaders
	}
	unix, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrInvalidTimestamp, tsHeader)
	}
	now := time.Now()
	ts := time.Unix(unix, 0)
	switch {
	case now.Sub(ts) > Tolerance:
		return fmt.Errorf("%w: %s", ErrTimestampTooOld, ts.UTC().Format(time.RFC3339))
	case ts.Sub(now) > Tolerance:
		return fmt.Errorf("%w: %s", ErrTimestampTooNew, ts.UTC().Format(time.RFC3339))
	}
	want := []byte(signature(key, id, unix, body))
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if ok && version == "v1" && hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return ErrSignatureMismatch
}
