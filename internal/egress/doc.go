// Package egress is the one egress policy for every byte that leaves a
// worker: the plain HTTP fetcher, webhook deliveries and (through [Proxy])
// every request a Chrome page makes.
//
// A [Policy] denies loopback, private, link-local, CGNAT, unspecified,
// multicast, broadcast, reserved, documentation and benchmarking addresses,
// including their IPv4-mapped, NAT64, 6to4 and Teredo forms and the legacy
// numeric host spellings (127.1, 2130706433, 0x7f000001, 0177.0.0.1). A host
// name is resolved once and every address it resolves to is checked before
// any packet is sent; the connection is then made to a checked address only,
// and the dialer's control hook checks it again at connect time, so DNS
// rebinding cannot slip a second, different answer in between.
//
// Refusals wrap [ErrBlocked] and carry a [*BlockedError]; [Classify] maps any
// dial or HTTP error to the spec error codes (blocked_address, dns_failure,
// connection_refused, connection_failed, navigation_timeout, tls_failure).
package egress
