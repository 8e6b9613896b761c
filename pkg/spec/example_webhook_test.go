package spec_test

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

func ExampleSignWebhook() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	sig, err := spec.SignWebhook(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	fmt.Println(sig, err)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= <nil>
}

// A receiver checks a delivery with spec.VerifyWebhook before trusting it.
func ExampleVerifyWebhook() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	body := []byte(`{"type":"job.succeeded","timestamp":"2026-03-01T12:00:00Z","data":{"id":"job_1"},"metadata":{}}`)
	now := time.Now()
	sig, _ := spec.SignWebhook(secret, "msg_1", now, body) // what pagefleet sends

	h := http.Header{}
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", sig)
	fmt.Println(spec.VerifyWebhook(secret, h, body))
	fmt.Println(spec.VerifyWebhook(secret, h, []byte(`{"type":"job.failed"}`)))
	// Output:
	// <nil>
	// no webhook-signature matches
}
