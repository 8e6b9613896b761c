package client_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pagefleet/pagefleet/pkg/client"
)

// Keep the JSON a page's own fetch() call returned, and see what the page
// looked like when a step failed.
func ExampleClient_Interact_networkAndDiagnostics() {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := client.New(baseURL, apiKey)

	acc, err := c.Interact(ctx, client.Request{
		URL:     siteURL + "/prices",
		Output:  []string{"network"},
		Network: &client.NetworkCapture{URLPatterns: []string{"*/api/*"}},
		Actions: []client.Action{
			{Type: "wait_for", Selector: "#prices li"},
			{Type: "click", Selector: "#checkout", TimeoutMs: 500}, // no such button
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	job, err := c.Wait(ctx, acc.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(job.Status, job.Error.Code)
	for _, n := range job.Result.Network {
		fmt.Println(n.Method, strings.TrimPrefix(n.URL, siteURL), n.Status, *n.Body)
	}
	d := job.Result.Diagnostics
	dom, err := c.DownloadArtifact(ctx, *d.DOM)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(strings.Contains(string(dom), "<li>A-1</li>"), d.Console[0].Level, d.Console[0].Text)
	// Output:
	// failed action_failed
	// GET /api/prices 200 [{"sku":"A-1","eur":12.5}]
	// true log loading prices
}
