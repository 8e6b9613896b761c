package spec

import (
	"slices"
	"testing"
)

func TestValidateFreshness(t *testing.T) {
	ms := func(n int64) *int64 { return &n }
	no := false
	for _, c := range []struct {
		name string
		kind string
		r    Request
		want []string
	}{
		{"fetch with all of them", KindFetch, Request{MaxAgeMs: ms(60000), StoreInCache: &no, ChangeTracking: &ChangeTracking{Tag: "weekly-1"}}, nil},
		{"max_age_ms 0", KindFetch, Request{MaxAgeMs: ms(0)}, nil},
		{"negative max_age_ms", KindFetch, Request{MaxAgeMs: ms(-1)}, []string{"max_age_ms"}},
		{"huge max_age_ms", KindFetch, Request{MaxAgeMs: ms(MaxAgeLimitMs + 1)}, []string{"max_age_ms"}},
		{"interact with cache fields", KindInteract, Request{MaxAgeMs: ms(5), StoreInCache: &no,
			Actions: []Action{{Type: ActWait, Ms: 1}}}, []string{"max_age_ms", "store_in_cache"}},
		{"interact with change tracking", KindInteract, Request{ChangeTracking: &ChangeTracking{},
			Actions: []Action{{Type: ActWait, Ms: 1}}}, nil},
		{"bad tag", KindFetch, Request{ChangeTracking: &ChangeTracking{Tag: "a b"}}, []string{"change_tracking.tag"}},
		{"only_changed on a job", KindFetch, Request{Webhook: &Webhook{URL: "https://h.example", OnlyChanged: true}}, []string{"webhook.only_changed"}},
	} {
		c.r.URL = "https://example.com/"
		var got []string
		for _, e := range c.r.Validate(c.kind, "") {
			got = append(got, e.Field)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: errors on %v, want %v", c.name, got, c.want)
		}
	}
	if errs := ValidateBatchFreshness(&Webhook{URL: "https://h.example", OnlyChanged: true}, &Request{}); len(errs) != 1 || errs[0].Field != "webhook.only_changed" {
		t.Errorf("only_changed without tracking: %v", errs)
	}
	if errs := ValidateBatchFreshness(&Webhook{URL: "https://h.example", OnlyChanged: true}, &Request{ChangeTracking: &ChangeTracking{}}); errs != nil {
		t.Errorf("only_changed with tracking: %v", errs)
	}
}

func TestFreshnessDefaults(t *testing.T) {
	r := Request{URL: "https://example.com/", ChangeTracking: &ChangeTracking{}}
	r.Normalize(KindFetch)
	r.NormalizeFreshness()
	if !r.Wants(OutMarkdown) || !r.Wants(OutHTML) {
		t.Errorf("a tracked job's outputs: %v", r.Output)
	}
	if !r.Cacheable(KindFetch) || !r.Stores(KindFetch) || r.Cacheable(KindInteract) {
		t.Error("a fetch without a session is cacheable and stored")
	}
	no := false
	r.StoreInCache = &no
	if r.Stores(KindFetch) {
		t.Error("store_in_cache false is stored")
	}
	r.Session = &SessionRef{ID: "s"}
	if r.Cacheable(KindFetch) {
		t.Error("a session job is cacheable")
	}
	w := &Webhook{URL: "https://h.example", OnlyChanged: true}
	for st, want := range map[string]bool{ChangeNew: true, ChangeChanged: true, ChangeSame: false, "": false} {
		j := &Job{Result: &Result{}}
		if st != "" {
			j.Result.Change = &Change{Status: st}
		}
		if w.WantsPage(j) != want {
			t.Errorf("only_changed, status %q: %v", st, !want)
		}
	}
	if !(&Webhook{URL: "https://h.example"}).WantsPage(&Job{}) {
		t.Error("a webhook without only_changed skips a page")
	}
}

func TestScheduleRunEvent(t *testing.T) {
	ev := Event{Type: EventScheduleRun, Data: []byte(`{"schedule_id":"sch_1","scheduled_at":"2026-05-01T12:00:02Z","status":"created","batch_id":"bat_1","created_at":"2026-05-01T12:00:02.1Z"}`)}
	r, err := ev.ScheduleRun()
	if err != nil || r.ScheduleID != "sch_1" || r.BatchID != "bat_1" || r.ScheduledAt.Second() != 2 {
		t.Errorf("%+v %v", r, err)
	}
	if _, err := (&Event{Type: EventScheduleRun, Data: []byte(`[`)}).ScheduleRun(); err == nil {
		t.Error("no error for bad data")
	}
}
