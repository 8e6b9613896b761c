//go:build pprof

package main

// With the build tag pprof, the process serves net/http/pprof on
// PAGEFLEET_PPROF_ADDR (see internal/pprofserve).
import _ "github.com/pagefleet/pagefleet/internal/pprofserve"
