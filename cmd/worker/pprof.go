//go:build pprof

// With the build tag pprof (the benchmark builds the binaries so), the
// process serves net/http/pprof on PAGEFLEET_PPROF_ADDR when it is set. A
// normal build has no profiling endpoint.

package main

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
	"time"
)

func init() {
	addr := os.Getenv("PAGEFLEET_PPROF_ADDR")
	if addr == "" {
		return
	}
	srv := &http.Server{Addr: addr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil {
			slog.Error("pprof server", "addr", addr, "err", err)
		}
	}()
}
