// Package webhook delivers job and batch events to the webhook URL a user
// gave, signed as Standard Webhooks (https://www.standardwebhooks.com).
//
// [Enqueue] builds an event's body once, gives it a webhook-id and enqueues
// one webhook:deliver task for it (the task id is the webhook-id, so an event
// is enqueued once). A [Deliverer] is the asynq handler of that task: every
// attempt POSTs the same body with the same webhook-id, a fresh
// webhook-timestamp and a signature over "id.timestamp.body" made with the
// tenant's webhook_secret, through the egress policy's dialer. A 2xx answer
// delivers the event; a blocked address or 410 Gone (the receiver wants no
// more) stops it; anything else (other statuses, redirects, which are never
// followed, timeouts, connection errors) is retried on the configured
// schedule, or later when the receiver asks so with Retry-After. Every
// attempt is appended to the delivery log of the job or batch it belongs to
// (rdb.Deliveries); an event delivered or given up is marked done there, so
// that a second task of it sends nothing.
//
// [spec.SignWebhook] and [spec.VerifyWebhook] implement the signature scheme for receivers and the
// Go client; they interoperate with the Standard Webhooks reference library.
package webhook
