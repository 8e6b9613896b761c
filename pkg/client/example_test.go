package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"time"

	"github.com/pagefleet/pagefleet/pkg/client"
)

// The examples run against a real api and worker that TestMain starts:
// baseURL and apiKey name them, siteURL is a local fixture site.

// Fetch a page as Markdown and wait for the result.
func ExampleClient_Fetch() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := client.New(baseURL, apiKey)

	acc, err := c.Fetch(ctx, client.Request{URL: siteURL + "/article", Output: []string{"markdown", "metadata"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(acc.Status, acc.Location == "/v1/jobs/"+acc.ID)

	job, err := c.Wait(ctx, acc.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(job.Status, job.Result.StatusCode)
	fmt.Println(strings.SplitN(*job.Result.Markdown, "\n", 2)[0])
	// Output:
	// queued true
	// succeeded 200
	// # Hello from the fixture
}

// Render a page in Chrome, drive it with actions and take a screenshot.
func ExampleClient_Interact() {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := client.New(baseURL, apiKey)

	acc, err := c.Interact(ctx, client.Request{
		URL: siteURL + "/counter",
		Actions: []client.Action{
			{Type: "click", Selector: "#add"},
			{Type: "click", Selector: "#add"},
			{Type: "evaluate", Script: "document.querySelector('#count').textContent"},
		},
		Output: []string{"text", "screenshot"},
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
	fmt.Println(job.Status)
	for _, a := range job.Result.Actions {
		fmt.Println(a.Index, a.Type, a.Status, a.DurationMs >= 0)
	}
	fmt.Println("evaluate:", string(job.Result.Actions[2].Result))
	fmt.Println(strings.Contains(*job.Result.Text, "Count: 2"), string(job.Result.Screenshot[1:4]))
	// Output:
	// succeeded
	// 0 click ok true
	// 1 click ok true
	// 2 evaluate ok true
	// evaluate: "2"
	// true PNG
}

// A session keeps a login: the second job is signed in.
func ExampleClient_Session() {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := client.New(baseURL, apiKey)
	sess := &client.SessionRef{ID: "example-user"}

	login, err := c.Interact(ctx, client.Request{URL: siteURL + "/login", Session: sess, Actions: []client.Action{
		{Type: "type", Selector: "#user", Value: "ada"},
		{Type: "click", Selector: "#go"},
		{Type: "wait_for", Selector: "#done"},
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	render := true
	account, err := c.Fetch(ctx, client.Request{URL: siteURL + "/account", RenderJS: &render, Session: sess, Output: []string{"text"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Jobs of one session run one at a time, in the order they were accepted.
	for _, id := range []string{login.ID, account.ID} {
		job, err := c.Wait(ctx, id)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(job.Status, job.Session.Updated)
		if id == account.ID {
			fmt.Println(strings.TrimSpace(*job.Result.Text))
		}
	}

	s, err := c.Session(ctx, sess.ID, true)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.ID, s.Cookies, len(s.Origins), s.State.Cookies[0].Name, s.State.Origins[0].LocalStorage[0])
	fmt.Println(c.DeleteSession(ctx, sess.ID))
	// Output:
	// succeeded true
	// succeeded false
	// Signed in as ada
	// example-user 1 1 sid {user ada}
	// <nil>
}

// Every error answer is an *client.Error carrying the problem document.
func ExampleError() {
	ctx := context.Background()
	c := client.New(baseURL, apiKey)

	_, err := c.Interact(ctx, client.Request{URL: "ftp://example.com", Actions: []client.Action{{Type: "click"}}})
	var perr *client.Error
	if errors.As(err, &perr) {
		fmt.Println(perr.Status, perr.Code)
		for _, f := range perr.Errors {
			fmt.Printf("%s: %s\n", f.Field, f.Message)
		}
	}

	_, err = c.Job(ctx, "job_doesnotexist")
	fmt.Println(errors.As(err, &perr), perr.Status, perr.Code)

	_, err = client.New(baseURL, "wrong-key").Jobs(ctx, client.ListOptions{})
	fmt.Println(err)
	// Output:
	// 422 validation_failed
	// url: must be an http or https URL
	// actions[0].selector: is required for click
	// true 404 not_found
	// pagefleet: 401 unauthorized: unknown API key
}

// An Idempotency-Key makes a retried submission return the job the first
// one created.
func ExampleIdempotencyKey() {
	ctx := context.Background()
	c := client.New(baseURL, apiKey)
	req := client.Request{URL: siteURL + "/article"}

	first, err := c.Fetch(ctx, req, client.IdempotencyKey("order-1234"))
	if err != nil {
		fmt.Println(err)
		return
	}
	again, err := c.Fetch(ctx, req, client.IdempotencyKey("order-1234"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(again.ID == first.ID, first.Replayed, again.Replayed)
	// Output: true false true
}

// A receiver checks each delivery with VerifyWebhook before trusting it.
func ExampleVerifyWebhook() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	events := make(chan client.Event, 1)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := client.VerifyWebhook(webhookSecret, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		select {
		case events <- ev:
		default: // a repeat (same ev.ID)
		}
	}))
	defer receiver.Close()

	c := client.New(baseURL, apiKey)
	acc, err := c.Fetch(ctx, client.Request{URL: siteURL + "/article",
		Webhook: &client.WebhookConfig{URL: receiver.URL + "/hooks/pagefleet", Metadata: []byte(`{"order":"1234"}`)}})
	if err != nil {
		fmt.Println(err)
		return
	}
	select {
	case ev := <-events:
		job, _ := ev.Job()
		fmt.Println(ev.Type, job.ID == acc.ID, job.Status, string(ev.Metadata), strings.HasPrefix(ev.ID, "msg_"))
	case <-ctx.Done():
		fmt.Println("no delivery")
	}
	// Output: job.succeeded true succeeded {"order":"1234"} true
}

// Page through the tenant's jobs with their cursor.
func ExampleClient_Jobs() {
	ctx := context.Background()
	c := client.New(baseURL, apiKey)
	n := 0
	opts := client.ListOptions{Limit: 2, Status: "succeeded"}
	for {
		page, err := c.Jobs(ctx, opts)
		if err != nil {
			fmt.Println(err)
			return
		}
		n += len(page.Data)
		if page.NextCursor == "" {
			break
		}
		opts.Cursor = page.NextCursor
	}
	fmt.Println(n > 0)
	// Output: true
}

// Fetch a list of pages as a batch, wait for it and stream every result.
func ExampleClient_BatchResults() {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := client.New(baseURL, apiKey)

	b, err := c.CreateBatch(ctx, client.BatchRequest{
		URLs:     []string{siteURL + "/page/1", siteURL + "/page/2", siteURL + "/page/3"},
		Template: &client.Request{Output: []string{"markdown"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.Kind, b.Status, b.Total)

	b, err = c.WaitBatch(ctx, b.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.Status, b.Succeeded, b.Failed)

	var titles []string
	for job, err := range c.BatchResults(ctx, b.ID) {
		if err != nil {
			fmt.Println(err)
			return
		}
		titles = append(titles, strings.TrimSpace(*job.Result.Markdown))
	}
	slices.Sort(titles)
	fmt.Println(strings.Join(titles, ", "))
	// Output:
	// urls running 3
	// completed 3 0
	// # Page 1, # Page 2, # Page 3
}

// An identity profile makes jobs look like a given browser and place.
func ExampleClient_PutIdentity() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := client.New(baseURL, apiKey)

	id, err := c.PutIdentity(ctx, "de-desktop", client.Identity{
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) ExampleBrowser/1.0",
		Locale:    "de-DE",
		Timezone:  "Europe/Berlin",
		Viewport:  &client.Viewport{Width: 1280, Height: 800},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(id.Name, id.Locale, id.AcceptLanguage)

	render := true
	acc, err := c.Fetch(ctx, client.Request{URL: siteURL + "/article", RenderJS: &render, Identity: "de-desktop",
		Actions: []client.Action{{Type: "evaluate", Script: "[navigator.language, Intl.DateTimeFormat().resolvedOptions().timeZone, innerWidth]"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	job, err := c.Wait(ctx, acc.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(job.Status, string(job.Result.Actions[0].Result))

	// The free plan has no identities.
	_, err = client.New(baseURL, freeAPIKey).Identities(ctx, client.ListOptions{})
	var perr *client.Error
	fmt.Println(errors.As(err, &perr), perr.Status, perr.Code)
	fmt.Println(c.DeleteIdentity(ctx, "de-desktop"))
	// Output:
	// de-desktop de-DE de-DE,de;q=0.9
	// succeeded ["de-DE","Europe/Berlin",1280]
	// true 403 plan_required
	// <nil>
}
