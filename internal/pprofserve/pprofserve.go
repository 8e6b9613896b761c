// Package pprofserve serves net/http/pprof on PAGEFLEET_PPROF_ADDR when that
// is set. Only builds with the tag pprof import it (cmd/api/pprof.go,
// cmd/worker/pprof.go; the benchmark builds the binaries so): a normal build
// has no profiling endpoint.
package pprofserve

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
