package client_test

import (
	"context"
	"fmt"
	"time"

	"github.com/pagefleet/pagefleet/pkg/client"
)

// Serve a repeat fetch from the result cache: with MaxAgeMs, a request
// whose result the tenant fetched less than that long ago ends at
// submission, and Accepted.Job holds the whole job.
func ExampleClient_Fetch_cache() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := client.New(baseURL, apiKey)
	hour := int64(time.Hour / time.Millisecond)
	req := client.Request{URL: siteURL + "/article?cached=1", Output: []string{"markdown"}, MaxAgeMs: &hour}

	first, err := c.Fetch(ctx, req)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := c.Wait(ctx, first.ID); err != nil {
		fmt.Println(err)
		return
	}
	again, err := c.Fetch(ctx, req)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(first.Status, first.Job == nil)
	fmt.Println(again.Status, again.Job.Result.Cache.Hit, again.Job.Result.Cache.SourceJob == first.ID)
	// Output:
	// queued true
	// succeeded true true
}

// Fetch a page every second, as a batch with change tracking, and read
// the first run.
func ExampleClient_CreateSchedule() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := client.New(baseURL, apiKey)

	s, err := c.CreateSchedule(ctx, client.ScheduleRequest{
		Cron:     "* * * * * *", // seconds first: every second
		Timezone: "Europe/Berlin",
		Batch: &client.BatchRequest{URLs: []string{siteURL + "/article"},
			Template: &client.Request{ChangeTracking: &client.ChangeTracking{Tag: "example"}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Kind, s.Timezone, s.Paused, s.NextRunAt != nil)
	var run client.ScheduleRun
	for run.BatchID == "" {
		p, err := c.ScheduleRuns(ctx, s.ID, client.ListOptions{Limit: 1})
		if err != nil {
			fmt.Println(err)
			return
		}
		if len(p.Data) > 0 {
			run = p.Data[len(p.Data)-1]
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	b, err := c.Batch(ctx, run.BatchID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(run.Status, b.ScheduleID == s.ID, b.ScheduledAt.Equal(run.ScheduledAt))
	paused, err := c.UpdateSchedule(ctx, s.ID, client.ScheduleUpdate{Paused: &[]bool{true}[0]})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(paused.Paused, paused.NextRunAt == nil)
	fmt.Println(c.DeleteSchedule(ctx, s.ID))
	// Output:
	// batch Europe/Berlin false true
	// created true true
	// true true
	// <nil>
}
