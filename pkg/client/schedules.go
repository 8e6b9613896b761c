package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// The freshness types are those of package spec.
type (
	// Schedule is a cron expression, its time zone and what each run
	// creates.
	Schedule = spec.Schedule
	// ScheduleUpdate changes a schedule: the fields given.
	ScheduleUpdate = spec.ScheduleUpdate
	// ScheduleRun is one run of a schedule.
	ScheduleRun = spec.ScheduleRun
	// ChangeTracking asks for result.change.
	ChangeTracking = spec.ChangeTracking
	// Changes counts a tracked batch's pages by change status.
	Changes = spec.Changes
)

// ScheduleRequest is the body of CreateSchedule: a cron expression (5
// fields, 6 with seconds first, or a descriptor such as @hourly), its IANA
// time zone ("" is UTC), and either the batch or the fetch job each due
// time creates.
type ScheduleRequest struct {
	Cron     string
	Timezone string
	Batch    *BatchRequest
	Fetch    *Request
	// Webhook receives schedule.run for each run.
	Webhook *WebhookConfig
	Paused  bool
}

// CreateSchedule creates a schedule. Each due time creates one batch (or
// fetch job) with ScheduleID set, exactly once however many API and worker
// processes run.
func (c *Client) CreateSchedule(ctx context.Context, req ScheduleRequest, opts ...CallOption) (*Schedule, error) {
	body := spec.ScheduleRequest{Cron: req.Cron, Timezone: req.Timezone, Webhook: req.Webhook, Paused: req.Paused}
	var err error
	if req.Batch != nil {
		if body.Batch, err = json.Marshal(req.Batch); err != nil {
			return nil, fmt.Errorf("encode the schedule's batch: %w", err)
		}
	}
	if req.Fetch != nil {
		if body.Fetch, err = json.Marshal(req.Fetch); err != nil {
			return nil, fmt.Errorf("encode the schedule's fetch: %w", err)
		}
	}
	var s Schedule
	if _, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/schedules", body: body, header: createHeader(opts)}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Schedule returns a schedule.
func (c *Client) Schedule(ctx context.Context, id string) (*Schedule, error) {
	var s Schedule
	if _, err := c.do(ctx, request{method: http.MethodGet, path: pathf("/v1/schedules/%s", id)}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Schedules returns a page of the tenant's schedules, newest first.
func (c *Client) Schedules(ctx context.Context, opts ListOptions) (*Page[Schedule], error) {
	var p Page[Schedule]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/schedules", query: opts.query()}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// UpdateSchedule pauses, resumes or changes the cron expression or time
// zone of a schedule and returns it.
func (c *Client) UpdateSchedule(ctx context.Context, id string, u ScheduleUpdate) (*Schedule, error) {
	var s Schedule
	if _, err := c.do(ctx, request{method: http.MethodPatch, path: pathf("/v1/schedules/%s", id), body: u}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// DeleteSchedule deletes a schedule; what its runs created stays.
func (c *Client) DeleteSchedule(ctx context.Context, id string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: pathf("/v1/schedules/%s", id)}, nil)
	return err
}

// ScheduleRuns returns a page of a schedule's runs, newest first.
func (c *Client) ScheduleRuns(ctx context.Context, id string, opts ListOptions) (*Page[ScheduleRun], error) {
	var p Page[ScheduleRun]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: pathf("/v1/schedules/%s/runs", id), query: opts.query()}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}
