package browser

import (
	"context"
	"errors"
	"strings"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// EgressErrorHeader is the response header the egress proxy sets on its own
// error responses; its value is the error code (such as blocked_address).
const EgressErrorHeader = "Pagefleet-Egress-Error"

// Causes of a job context's end, besides the caller's context.
var (
	errBrowserGone     = errors.New("browser process exited")
	errRendererCrashed = errors.New("renderer process crashed")
	errPoolStopped     = errors.New("browser pool is stopped")
)

// jobError is a *spec.Error that keeps its cause, so that errors.As finds the
// *spec.Error and errors.Is finds the cause (such as context.DeadlineExceeded).
type jobError struct {
	err   *spec.Error
	cause error
}

func (e *jobError) Error() string   { return e.err.Error() }
func (e *jobError) Unwrap() []error { return []error{e.err, e.cause} }

// wrap returns se with cause attached, or se itself when cause is nil.
func wrap(se *spec.Error, cause error) error {
	if cause == nil {
		return se
	}
	return &jobError{err: se, cause: cause}
}

// netError maps a Chrome network error text ("net::ERR_…") to an error code
// and whether a retry may help.
func netError(text string) (code string, retryable bool) {
	t := strings.TrimPrefix(text, "net::")
	switch t {
	case "ERR_NAME_NOT_RESOLVED", "ERR_NAME_RESOLUTION_FAILED", "ERR_DNS_MALFORMED_RESPONSE",
		"ERR_DNS_SERVER_FAILED", "ERR_DNS_TIMED_OUT", "ERR_DNS_NAME_HTTPS_ONLY":
		return spec.CodeDNSFailure, false
	case "ERR_CONNECTION_REFUSED":
		return spec.CodeConnectionRefused, false
	case "ERR_TIMED_OUT":
		return spec.CodeNavigationTimeout, true
	case "ERR_CONNECTION_RESET", "ERR_CONNECTION_CLOSED", "ERR_CONNECTION_ABORTED",
		"ERR_CONNECTION_FAILED", "ERR_CONNECTION_TIMED_OUT", "ERR_ADDRESS_UNREACHABLE",
		"ERR_ADDRESS_INVALID", "ERR_EMPTY_RESPONSE", "ERR_NETWORK_CHANGED",
		"ERR_INTERNET_DISCONNECTED", "ERR_PROXY_CONNECTION_FAILED", "ERR_TUNNEL_CONNECTION_FAILED",
		"ERR_SOCKS_CONNECTION_FAILED", "ERR_NETWORK_IO_SUSPENDED", "ERR_HTTP2_PROTOCOL_ERROR",
		"ERR_QUIC_PROTOCOL_ERROR", "ERR_INCOMPLETE_CHUNKED_ENCODING":
		return spec.CodeConnectionFailed, true
	case "ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS", "ERR_BLOCKED_BY_PRIVATE_NETWORK_ACCESS_CHECKS":
		return spec.CodeBlockedAddress, false
	case "ERR_TOO_MANY_REDIRECTS":
		return spec.CodeTooManyRedirects, false
	}
	if strings.HasPrefix(t, "ERR_CERT_") || strings.HasPrefix(t, "ERR_SSL_") ||
		t == "ERR_BAD_SSL_CLIENT_AUTH_CERT" || t == "ERR_CERTIFICATE_TRANSPARENCY_REQUIRED" ||
		t == "ERR_ECH_FALLBACK_CERTIFICATE_INVALID" {
		return spec.CodeTLSFailure, false
	}
	return spec.CodeNavigationFailed, false
}

// egressCode maps an error code reported by the egress proxy to whether a
// retry may help.
func egressRetryable(code string) bool {
	switch code {
	case spec.CodeConnectionFailed, spec.CodeNavigationTimeout, spec.CodeTimeout, spec.CodeProxyFailed:
		return true
	}
	return false
}

// isContextErr reports whether err comes from a context's end.
func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
