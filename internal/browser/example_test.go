package browser_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// A worker starts one pool, renders jobs on it, and stops it on shutdown.
func ExamplePool() {
	pool, err := browser.New(browser.Config{Browsers: 2, ContextsPerBrowser: 4})
	if err != nil {
		log.Fatal(err)
	}
	if err := pool.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer pool.Stop(context.Background())

	// The job's deadline lives on the context of the call.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := pool.Render(ctx, browser.Request{
		URL:          "https://example.com/login",
		Actions:      []spec.Action{{Type: spec.ActClick, Selector: "#more"}},
		CaptureState: true,
	})
	var se *spec.Error
	switch {
	case errors.As(err, &se) && se.Code == spec.CodeActionFailed:
		fmt.Println("action", *se.Action, "failed; the page was", res.FinalURL)
	case err != nil:
		fmt.Println("failed:", err)
	default:
		fmt.Println(res.StatusCode, len(res.HTML), len(res.State.Cookies))
	}
}
