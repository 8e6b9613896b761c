// Package fetch is the plain HTTP fetcher behind render_js:false jobs: one
// GET (following redirects) dialed through the egress policy at every hop,
// with the session's cookies sent and updated, the body decompressed (gzip,
// deflate, br), capped in size and decoded to UTF-8.
//
// Errors are *spec.Error values: navigation_timeout, too_many_redirects,
// response_too_large, blocked_address, dns_failure, connection_refused,
// connection_failed, tls_failure, navigation_failed, cancelled. A target's
// 4xx or 5xx answer is a Response, not an error.
package fetch
