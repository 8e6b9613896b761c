package worker

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// memStore is an ArtifactStore in memory.
type memStore map[string][]byte

func (m memStore) Put(_ context.Context, jobID, name, contentType string, data []byte) (spec.Artifact, error) {
	m[name] = data
	return spec.Artifact{ID: jobID + "~" + name, Size: int64(len(data)), ContentType: contentType}, nil
}

func TestKeepCaptureStaysOutOfRedis(t *testing.T) {
	store := memStore{}
	w := &Worker{Deps: Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	p := &jobs.RunPayload{JobID: "job_1", Tenant: "acme", Kind: spec.KindInteract,
		Request: spec.Request{Output: []string{spec.OutNetwork, spec.OutHAR}}}
	keeper := func() *keeper {
		k := w.keeper(context.Background(), p)
		k.store = store
		return k
	}
	big := []byte(strings.Repeat("x", 40<<10))
	br := &browser.Result{
		Network: []browser.NetworkResponse{
			{URL: "https://a.example/api/1", Body: big},                // fits
			{URL: "https://a.example/api/2", Body: big},                // would pass 64 KiB together
			{URL: "https://a.example/api/3", Body: []byte(`{"ok":1}`)}, // still fits
			{URL: "https://a.example/api/4", Body: []byte{0xff, 0xfe}}, // binary
		},
		HAR:         []byte(`{"log":{}}`),
		Downloads:   []browser.Download{{Filename: "r.csv", MIMEType: "text/csv", Size: 3, Data: []byte("a,b")}, {Filename: "huge.bin", Error: "too large"}},
		Diagnostics: &browser.Diagnostics{Screenshot: []byte("png"), DOM: "<html></html>", HAR: []byte("{}"), Console: []browser.ConsoleMessage{{Level: "error", Text: "x"}}},
	}
	res := &spec.Result{}
	keeper().keepCapture(res, br)
	n := res.Network
	inline := func(i int) bool { return n[i].Body != nil && n[i].BodyArtifact == nil }
	stored := func(i int) bool { return n[i].Body == nil && n[i].BodyArtifact != nil }
	if len(n) != 4 || !inline(0) || !stored(1) || !inline(2) || !stored(3) {
		t.Errorf("network %+v", n)
	}
	if res.HAR == nil || len(res.Downloads) != 2 || res.Downloads[0].Artifact == nil || res.Downloads[1].Artifact != nil || res.Downloads[1].Error == "" {
		t.Errorf("har %v downloads %+v", res.HAR, res.Downloads)
	}
	d := res.Diagnostics
	if d == nil || d.Screenshot == nil || d.DOM == nil || d.HAR == nil || len(d.Console) != 1 || d.Errors != nil {
		t.Errorf("diagnostics %+v", d)
	}
	if len(store) != 7 {
		t.Errorf("stored %d files, want 7 (2 bodies, har, download, screenshot, dom, har)", len(store))
	}

	// Without a store the files are left out, and the diagnostics say so.
	res = &spec.Result{}
	w.keeper(context.Background(), p).keepCapture(res, br)
	if res.HAR != nil || res.Diagnostics.Screenshot != nil || res.Diagnostics.Errors["screenshot"] == "" || res.Network[1].BodyArtifact != nil {
		t.Errorf("without a store: %+v", res)
	}
}
