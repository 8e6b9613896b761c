package webhook_test

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/pagefleet/pagefleet/internal/webhook"
)

func ExampleSign() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	sig, err := webhook.Sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	fmt.Println(sig, err)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= <nil>
}

// A receiver checks a delivery with Verify before trusting it.
func ExampleVerify() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	body := []byte(`{"type":"job.succeeded","timestamp":"2026-03-01T12:00:00Z","data":{"id":"job_1"},"metadata":{}}`)
	now := time.Now()
	sig, _ := webhook.Sign(secret, "msg_1", now, body) // what pagefleet sends

	h := http.Header{}
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", sig)
	fmt.Println(webhook.Verify(secret, h, body))
	fmt.Println(webhook.Verify(secret, h, []byte(`{"type":"job.failed"}`)))
	// Output:
	// <nil>
	// no webhook-signature matches
}
