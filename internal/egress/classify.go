package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Classify maps a dial or HTTP error to a spec error: blocked_address,
// proxy_failed (an upstream proxy's own failure), dns_failure,
// connection_refused, navigation_timeout (every timeout,
// including an expired context), cancelled, tls_failure or, for anything
// else, connection_failed. An *spec.Error passes through; nil gives nil.
func Classify(err error) *spec.Error {
	if err == nil {
		return nil
	}
	var se *spec.Error
	if errors.As(err, &se) {
		return se
	}
	msg := err.Error()
	var pe *ProxyError
	if errors.As(err, &pe) {
		return &spec.Error{Code: spec.CodeProxyFailed, Message: pe.Error(), Retryable: true}
	}
	var be *BlockedError
	if errors.As(err, &be) {
		return &spec.Error{Code: spec.CodeBlockedAddress, Message: be.Error(), Retryable: false}
	}
	if errors.Is(err, ErrBlocked) {
		return &spec.Error{Code: spec.CodeBlockedAddress, Message: msg, Retryable: false}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return &spec.Error{Code: spec.CodeDNSFailure, Message: dnsErr.Error(), Retryable: !dnsErr.IsNotFound}
	}
	if errors.Is(err, context.Canceled) {
		return &spec.Error{Code: spec.CodeCancelled, Message: msg, Retryable: false}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return &spec.Error{Code: spec.CodeNavigationTimeout, Message: msg, Retryable: true}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &spec.Error{Code: spec.CodeNavigationTimeout, Message: msg, Retryable: true}
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return &spec.Error{Code: spec.CodeConnectionRefused, Message: msg, Retryable: true}
	}
	if isTLSError(err) {
		return &spec.Error{Code: spec.CodeTLSFailure, Message: msg, Retryable: false}
	}
	return &spec.Error{Code: spec.CodeConnectionFailed, Message: msg, Retryable: true}
}

func isTLSError(err error) bool {
	var (
		cve   *tls.CertificateVerificationError
		rhe   tls.RecordHeaderError
		alert tls.AlertError
		ech   *tls.ECHRejectionError
		uae   x509.UnknownAuthorityError
		hne   x509.HostnameError
		cie   x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &cve), errors.As(err, &rhe), errors.As(err, &alert), errors.As(err, &ech),
		errors.As(err, &uae), errors.As(err, &hne), errors.As(err, &cie):
		return true
	}
	// The handshake's own failures are plain errors prefixed "tls: ".
	msg := err.Error()
	return strings.HasPrefix(msg, "tls: ") || strings.Contains(msg, ": tls: ")
}
