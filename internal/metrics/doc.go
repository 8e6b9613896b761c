// Package metrics holds the Prometheus helpers the binaries share.
package metrics
