package webhook

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func headers(id string, ts time.Time, sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, sig)
	return h
}

func TestSignVerify(t *testing.T) {
	secret := newSecret()
	body := []byte(`{"type":"job.succeeded","data":{"id":"job_1"}}`)
	id := NewWebhookID()
	now := time.Now()
	sig, err := Sign(secret, id, now, body)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(secret, headers(id, now, sig), body); err != nil {
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

	old := now.Add(-Tolerance - time.Minute)
	oldSig, _ := Sign(secret, id, old, body)
	future := now.Add(Tolerance + time.Minute)
	futureSig, _ := Sign(secret, id, future, body)
	otherSig, _ := Sign(newSecret(), id, now, body)

	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
		want error
	}{
		{"tampered body", headers(id, now, sig), []byte(`{"type":"job.failed","data":{"id":"job_1"}}`), ErrSignatureMismatch},
		{"tampered id", headers(id+"x", now, sig), body, ErrSignatureMismatch},
		{"tampered timestamp", headers(id, now.Add(time.Second), sig), body, ErrSignatureMismatch},
		{"other secret", headers(id, now, otherSig), body, ErrSignatureMismatch},
		{"wrong version", headers(id, now, "v1a,"+sig[3:]), body, ErrSignatureMismatch},
		{"old timestamp", headers(id, old, oldSig), body, ErrTimestampTooOld},
		{"future timestamp", headers(id, future, futureSig), body, ErrTimestampTooNew},
		{"missing signature", headers(id, now, ""), body, ErrMissingHeaders},
		{"bad timestamp", func() http.Header { h := headers(id, now, sig); h.Set(HeaderTimestamp, "soon"); return h }(), body, ErrInvalidTimestamp},
		{"several signatures, one valid", headers(id, now, otherSig+" v2,abc "+sig), body, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(secret, tc.h, tc.body)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}

	for _, bad := range []string{"", "whsec_", "whsec_not base64!"} {
		if _, err := Sign(bad, id, now, body); !errors.Is(err, ErrInvalidSecret) {
			t.Errorf("Sign(%q) = %v", bad, err)
		}
		if err := Verify(bad, headers(id, now, sig), body); !errors.Is(err, ErrInvalidSecret) {
			t.Errorf("Verify(%q) = %v", bad, err)
		}
	}
}
