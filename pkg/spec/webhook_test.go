package spec

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func headers(id string, ts time.Time, sig string) http.Header {
	h := http.Header{}
	h.Set(WebhookIDHeader, id)
	h.Set(WebhookTimestampHeader, strconv.FormatInt(ts.Unix(), 10))
	h.Set(WebhookSignatureHeader, sig)
	return h
}

func TestSignVerify(t *testing.T) {
	secret := newSecret()
	body := []byte(`{"type":"job.succeeded","data":{"id":"job_1"}}`)
	id := NewWebhookID()
	now := time.Now()
	sig, err := SignWebhook(secret, id, now, body)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyWebhook(secret, headers(id, now, sig), body); err != nil {
		t.Fatalf("round trip: %v", err)
	}

	// Interoperability with the reference library, both ways.
	ref, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Verify(body, headers(id, now, sig)); err != nil {
		t.Fatalf("reference library rejects our signature: %v", err)
	}
	refSig, _ := ref.Sign(id, now, body)
	if refSig != sig {
		t.Fatalf("reference signature %q, ours %q", refSig, sig)
	}

	old := now.Add(-WebhookTolerance - time.Minute)
	oldSig, _ := SignWebhook(secret, id, old, body)
	future := now.Add(WebhookTolerance + time.Minute)
	futureSig, _ := SignWebhook(secret, id, future, body)
	otherSig, _ := SignWebhook(newSecret(), id, now, body)

	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
		want error
	}{
		{"tampered body", headers(id, now, sig), []byte(`{"type":"job.failed","data":{"id":"job_1"}}`), ErrWebhookSignature},
		{"tampered id", headers(id+"x", now, sig), body, ErrWebhookSignature},
		{"tampered timestamp", headers(id, now.Add(time.Second), sig), body, ErrWebhookSignature},
		{"other secret", headers(id, now, otherSig), body, ErrWebhookSignature},
		{"wrong version", headers(id, now, "v1a,"+sig[3:]), body, ErrWebhookSignature},
		{"old timestamp", headers(id, old, oldSig), body, ErrWebhookTooOld},
		{"future timestamp", headers(id, future, futureSig), body, ErrWebhookTooNew},
		{"missing signature", headers(id, now, ""), body, ErrWebhookHeaders},
		{"bad timestamp", func() http.Header { h := headers(id, now, sig); h.Set(WebhookTimestampHeader, "soon"); return h }(), body, ErrWebhookTimestamp},
		{"several signatures, one valid", headers(id, now, otherSig+" v2,abc "+sig), body, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyWebhook(secret, tc.h, tc.body)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("VerifyWebhook = %v, want %v", err, tc.want)
			}
		})
	}

	for _, bad := range []string{"", "whsec_", "whsec_not base64!"} {
		if _, err := SignWebhook(bad, id, now, body); !errors.Is(err, ErrWebhookSecret) {
			t.Errorf("SignWebhook(%q) = %v", bad, err)
		}
		if err := VerifyWebhook(bad, headers(id, now, sig), body); !errors.Is(err, ErrWebhookSecret) {
			t.Errorf("VerifyWebhook(%q) = %v", bad, err)
		}
	}
}

func newSecret() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return WebhookSecretPrefix + base64.StdEncoding.EncodeToString(k)
}

// NewWebhookID is a random webhook-id for tests.
func NewWebhookID() string { return "msg_" + strconv.FormatInt(time.Now().UnixNano(), 36) }
