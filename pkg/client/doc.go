// Package client is the Go client of the pagefleet HTTP API.
//
// A [Client] sends typed requests (the request and job types of package
// spec) with the tenant's API key and turns every error answer into an
// [*Error] that carries the problem document:
//
//	c := client.New("http://localhost:8080", os.Getenv("PF_KEY"))
//	acc, err := c.Fetch(ctx, client.Request{URL: "https://example.com", Output: []string{"markdown"}})
//	if err != nil { … }
//	job, err := c.Wait(ctx, acc.ID) // long-polls until the job ends or ctx is done
//
// [Client.Wait] and [Client.WaitBatch] wait with the context; [Client.BatchResults]
// streams every job of a batch; [VerifyWebhook] checks the Standard Webhooks
// signature of a delivery before its body is trusted.
//
// The package links neither Chrome (chromedp) nor the server (Echo).
package client
