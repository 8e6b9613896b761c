package client

import "github.com/pagefleet/pagefleet/pkg/spec"

// The capture types (the network and har outputs, downloads and failure
// diagnostics) are those of package spec.
type (
	// NetworkCapture is a request's "network": which XHR and fetch
	// responses the network output keeps.
	NetworkCapture = spec.NetworkCapture
	// NetworkEntry is one kept response of result.network.
	NetworkEntry = spec.NetworkEntry
	// Download is one file of result.downloads.
	Download = spec.Download
	// Diagnostics is result.diagnostics of a failed rendered job.
	Diagnostics = spec.Diagnostics
	// ConsoleMessage is one console line of the diagnostics.
	ConsoleMessage = spec.ConsoleMessage
)
