package browser_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/browser"
)

func TestDebug(t *testing.T) {
	p, _ := browser.New(browser.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	p.Start(context.Background())
	defer p.Stop(context.Background())
	for range 3 {
		d, err := p.TimeNewTab()
		t.Logf("newTab %v %v", d, err)
	}
	for range 6 {
		start := time.Now()
		_, err := renderOn(t, p, browser.Request{URL: ts.URL + "/js"}, 20*time.Second)
		t.Logf("render %v %v", time.Since(start), err)
		time.Sleep(700 * time.Millisecond)
	}
}
