package client_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pagefleet/pagefleet/pkg/client"
)

// Print a page to PDF and download it, and a screenshot of one element,
// through their signed links (no API key needed).
func ExampleClient_DownloadArtifact() {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := client.New(baseURL, apiKey)

	render := true
	acc, err := c.Fetch(ctx, client.Request{
		URL:        siteURL + "/article",
		RenderJS:   &render,
		Output:     []string{"pdf", "screenshot"},
		PDF:        &client.PDFOptions{Format: "A4"},
		Screenshot: &client.ScreenshotOptions{Selector: "h1", Format: "jpeg", Quality: 80},
		Artifacts:  client.ArtifactsURL, // links only; "inline" (default) embeds the bytes
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
	fmt.Println(job.Status, job.Result.PDF.Pages)
	for _, name := range []string{"pdf", "screenshot"} {
		a := job.Result.Artifacts[name]
		b, err := c.DownloadArtifact(ctx, a)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(name, a.ContentType, int64(len(b)) == a.Size, strings.Contains(a.URL, "/v1/artifacts/"+acc.ID))
	}
	// Output:
	// succeeded 1
	// pdf application/pdf true true
	// screenshot image/jpeg true true
}
