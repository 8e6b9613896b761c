package worker

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/artifact"
	"github.com/pagefleet/pagefleet/jobs"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// TestKeepArtifacts: the screenshot and the pdf output leave the result
// for the store (their names in Embed for an inline job); without a store
// only files of at most MaxInlineBytes stay inline.
func TestKeepArtifacts(t *testing.T) {
	ctx := context.Background()
	b, err := artifact.NewFileBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := artifact.New(b, artifact.Config{TTL: time.Hour, Signer: artifact.NewSigner([]byte("0123456789abcdef"), "", nil)})
	small, big := bytes.Repeat([]byte("s"), 100), bytes.Repeat([]byte("b"), MaxInlineBytes+1)
	pdf := []byte("%PDF-1.4 not really")
	for _, tc := range []struct {
		name      string
		store     *artifact.Store
		mode      string
		shot, pdf []byte
		wantErr   bool
		wantEmbed int
		wantShot  bool // bytes left in the result
		wantData  bool
	}{
		{"inline to the store", store, "", big, pdf, false, 2, false, false},
		{"url to the store", store, spec.ArtifactsURL, big, pdf, false, 0, false, false},
		{"no store, small files stay", nil, "", small, pdf, false, 0, true, true},
		{"no store, url mode keeps no pdf bytes", nil, spec.ArtifactsURL, small, pdf, false, 0, true, false},
		{"no store, a big file fails", nil, "", big, nil, true, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &Worker{Deps: Deps{Artifacts: tc.store, Logger: slog.New(slog.DiscardHandler)}}
			p := &jobs.RunPayload{JobID: "job_test", Tenant: "acme"}
			p.Request.Artifacts = tc.mode
			res := &spec.Result{Screenshot: tc.shot}
			jerr := w.keepArtifacts(ctx, p, res, tc.pdf)
			if (jerr != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", jerr, tc.wantErr)
			}
			if len(res.Embed) != tc.wantEmbed || (res.Screenshot != nil) != tc.wantShot {
				t.Errorf("embed %v, screenshot %d bytes", res.Embed, len(res.Screenshot))
			}
			if tc.pdf != nil && (res.PDF == nil || (res.PDF.Data != nil) != tc.wantData) {
				t.Errorf("pdf %+v", res.PDF)
			}
			if tc.store != nil && !tc.wantErr {
				a := res.Artifacts[spec.ArtifactScreenshot]
				got, err := tc.store.Bytes(ctx, a.ID)
				if err != nil || !bytes.Equal(got, tc.shot) || a.ContentType != "image/png" {
					t.Errorf("stored screenshot %+v: %d bytes, %v", a, len(got), err)
				}
			}
		})
	}
}
