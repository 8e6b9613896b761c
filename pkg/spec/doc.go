// Package spec holds pagefleet's wire types: everything that travels over
// the HTTP API and in webhooks — job requests and their validation, jobs and
// results, batches and crawls, sessions and their state, identity profiles,
// problem documents, lists, webhook events, delivery attempts and the
// Standard Webhooks signature scheme.
//
// The server and the Go client (pkg/client) share these declarations, so a
// field is declared once. The package imports only the standard library: a
// program that talks to pagefleet links neither Redis, asynq, Chrome nor
// Echo. It is public for that reason.
package spec
