package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/artifact"
	"github.com/pagefleet/pagefleet/internal/convert"
	"github.com/pagefleet/pagefleet/internal/s3test"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// artifactSecret signs the artifact links of these tests' fleets, so a
// test can sign links of its own (expired ones, ones of a deleted job).
const artifactSecret = "e2e-artifact-secret-0123456789"

// artifactSite serves a report page with a heading and a fixed-size
// #chart, and a PDF document.
func artifactSite(t *testing.T) *Site {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "internal", "convert", "testdata", "report.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	return NewSite(t, map[string]http.HandlerFunc{
		"/report": html(`<!doctype html><html lang="en"><head><title>Report</title>
<style>body{margin:0;font-family:sans-serif} #chart{width:321px;height:157px;margin:40px 0 0 23px;background:linear-gradient(90deg,#c33,#33c)}</style></head>
<body><h1>Annual Gadget Summary</h1><p>Gadgets did well this year.</p><div id="chart"></div>
<div style="height:1800px">tall</div><p>The end.</p></body></html>`),
		"/doc.pdf": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/pdf")
			w.Write(doc)
		},
	})
}

// fetchArtifact GETs an artifact link without an API key.
func fetchArtifact(t *testing.T, link string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(link)
	if err != nil {
		t.Fatalf("GET %s: %v", link, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// problemCode is the code of a problem+json answer.
func problemCode(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("answer %d is %s, not problem+json: %s", resp.StatusCode, ct, body)
	}
	var p spec.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	return p.Code
}

// relink signs link's artifact anew until exp.
func relink(t *testing.T, link string, exp time.Time) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(u.Path, "/v1/artifacts/")
	s := artifact.NewSigner([]byte(artifactSecret), u.Scheme+"://"+u.Host, nil)
	return s.URL(id, exp)
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestArtifactOutputs(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 2, Env: []string{"PAGEFLEET_ARTIFACTS_SECRET=" + artifactSecret}})
	site := artifactSite(t)

	t.Run("pdf output has the page's heading", func(t *testing.T) {
		r := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/report", "render_js": true,
			"output": []string{"pdf"}, "pdf": map[string]any{"format": "A4", "landscape": false}})
		if r.Status != spec.StatusSucceeded {
			t.Fatalf("%s %+v", r.Status, r.Error)
		}
		p := r.Result.PDF
		if p == nil || p.Pages < 1 || !bytes.HasPrefix(p.Data, []byte("%PDF-")) {
			t.Fatalf("result.pdf = %+v", p)
		}
		doc, err := convert.ParsePDF(p.Data)
		if err != nil {
			t.Fatalf("the pdf output does not decode: %v", err)
		}
		if !strings.Contains(doc.Text, "Annual Gadget Summary") || doc.Pages != p.Pages {
			t.Fatalf("PDF of %d pages (result says %d), text %q", doc.Pages, p.Pages, doc.Text)
		}
		a, ok := r.Result.Artifacts[spec.ArtifactPDF]
		if !ok || a.SHA256 != hexSum(p.Data) || a.Size != int64(len(p.Data)) || a.ContentType != "application/pdf" {
			t.Fatalf("artifacts = %+v", r.Result.Artifacts)
		}
		var raw struct {
			Result map[string]any `json:"result"`
		}
		e.Do("GET", "/v1/jobs/"+r.ID, keyA, nil, &raw)
		if _, ok := raw.Result["embed"]; ok {
			t.Fatalf("the answer shows result.embed")
		}
	})

	t.Run("pdf target's text in text and markdown", func(t *testing.T) {
		for _, render := range []bool{false, true} {
			r := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/doc.pdf", "render_js": render, "output": []string{"text", "markdown"}})
			if r.Status != spec.StatusSucceeded {
				t.Fatalf("render=%v: %s %+v", render, r.Status, r.Error)
			}
			if !contains(r.Result.Text, "Quarterly Widget Report") || !contains(r.Result.Text, "Sales of blue widgets grew by twelve percent.") {
				t.Errorf("render=%v: text %v", render, r.Result.Text)
			}
			if !contains(r.Result.Markdown, "Quarterly Widget Report\n\nSales of blue widgets") {
				t.Errorf("render=%v: markdown %v", render, r.Result.Markdown)
			}
			if r.Result.PDF == nil || r.Result.PDF.Pages != 1 || r.Result.PDF.Data != nil {
				t.Errorf("render=%v: result.pdf = %+v", render, r.Result.PDF)
			}
		}
	})

	t.Run("element screenshot has the element's size", func(t *testing.T) {
		for _, format := range []string{"png", "jpeg"} {
			shot := map[string]any{"selector": "#chart", "format": format}
			if format == "jpeg" {
				shot["quality"] = 70
			}
			r := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/report", "render_js": true,
				"output": []string{"screenshot"}, "screenshot": shot,
				"actions": []map[string]any{{"type": "evaluate", "script": `(() => { const r = document.querySelector("#chart").getBoundingClientRect(); return [r.width, r.height, window.devicePixelRatio]; })()`}}})
			if r.Status != spec.StatusSucceeded {
				t.Fatalf("%s: %s %+v", format, r.Status, r.Error)
			}
			var box [3]float64
			if err := json.Unmarshal(r.Result.Actions[0].Result, &box); err != nil || box[0] != 321 || box[1] != 157 {
				t.Fatalf("%s: #chart's box %s", format, r.Result.Actions[0].Result)
			}
			var img image.Image
			var err error
			if format == "png" {
				img, err = png.Decode(bytes.NewReader(r.Result.Screenshot))
			} else {
				img, err = jpeg.Decode(bytes.NewReader(r.Result.Screenshot))
			}
			if err != nil {
				t.Fatalf("%s: the screenshot does not decode: %v", format, err)
			}
			want := image.Pt(int(math.Round(box[0]*box[2])), int(math.Round(box[1]*box[2])))
			if got := img.Bounds().Size(); got != want {
				t.Errorf("%s: screenshot %v, #chart is %v CSS px × %v = %v", format, got, box[:2], box[2], want)
			}
			if a := r.Result.Artifacts[spec.ArtifactScreenshot]; a.ContentType != "image/"+format {
				t.Errorf("%s: artifact %+v", format, a)
			}
		}
		r := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/report", "render_js": true,
			"output": []string{"screenshot"}, "screenshot": map[string]any{"selector": "#nowhere"}})
		if r.Status != spec.StatusFailed || r.Error.Code != spec.CodeScreenshotFailed {
			t.Errorf("a selector that matches nothing: %s %+v", r.Status, r.Error)
		}
	})

	t.Run("viewport and full page", func(t *testing.T) {
		r := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/report", "render_js": true,
			"output": []string{"screenshot"}, "screenshot": map[string]any{"full_page": false},
			"actions": []map[string]any{{"type": "evaluate", "script": `[innerWidth, innerHeight, devicePixelRatio]`}}})
		if r.Status != spec.StatusSucceeded {
			t.Fatalf("%s %+v", r.Status, r.Error)
		}
		var vp [3]float64
		json.Unmarshal(r.Result.Actions[0].Result, &vp)
		img, err := png.Decode(bytes.NewReader(r.Result.Screenshot))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := img.Bounds().Size(), image.Pt(int(vp[0]*vp[2]), int(vp[1]*vp[2])); got != want {
			t.Errorf("viewport screenshot %v, viewport %v", got, want)
		}
		if int(vp[1]*vp[2]) >= 1800 {
			t.Fatalf("viewport %v is taller than the page's tall part", vp)
		}
	})

	t.Run("artifact link works without a key while signed and unexpired", func(t *testing.T) {
		r := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/report", "render_js": true,
			"output": []string{"screenshot", "pdf"}, "artifacts": "url"})
		if r.Status != spec.StatusSucceeded {
			t.Fatalf("%s %+v", r.Status, r.Error)
		}
		if r.Result.Screenshot != nil || r.Result.PDF == nil || r.Result.PDF.Data != nil || r.Result.PDF.Pages < 1 {
			t.Fatalf("artifacts url still inlines: screenshot %d bytes, pdf %+v", len(r.Result.Screenshot), r.Result.PDF)
		}
		shot := r.Result.Artifacts[spec.ArtifactScreenshot]
		if !strings.HasPrefix(shot.URL, e.APIURL+"/v1/artifacts/") || !shot.ExpiresAt.After(time.Now().Add(time.Hour)) {
			t.Fatalf("screenshot artifact %+v", shot)
		}
		resp, body := fetchArtifact(t, shot.URL)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || hexSum(body) != shot.SHA256 || int64(len(body)) != shot.Size {
			t.Fatalf("GET the link: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		if _, err := png.Decode(bytes.NewReader(body)); err != nil {
			t.Fatalf("the artifact is no PNG: %v", err)
		}
		resp, body = fetchArtifact(t, r.Result.Artifacts[spec.ArtifactPDF].URL)
		if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte("%PDF-")) {
			t.Fatalf("GET the pdf link: %d", resp.StatusCode)
		}

		u, _ := url.Parse(shot.URL)
		q := u.Query()
		wrong := *u
		q2 := url.Values{"expires": q["expires"], "sig": {strings.ToUpper(q.Get("sig")[:8]) + q.Get("sig")[8:]}}
		wrong.RawQuery = q2.Encode()
		later := *u
		later.RawQuery = url.Values{"expires": {itoa(int(time.Now().Add(48 * time.Hour).Unix()))}, "sig": q["sig"]}.Encode()
		bare := *u
		bare.RawQuery = ""
		for name, link := range map[string]string{"wrong signature": wrong.String(), "moved expiry": later.String(), "no signature": bare.String()} {
			resp, body := fetchArtifact(t, link)
			if resp.StatusCode != http.StatusForbidden || problemCode(t, resp, body) != "signature_invalid" {
				t.Errorf("%s: %d %s", name, resp.StatusCode, body)
			}
		}
		resp, body = fetchArtifact(t, relink(t, shot.URL, time.Now().Add(-time.Minute)))
		if resp.StatusCode != http.StatusGone || problemCode(t, resp, body) != "link_expired" {
			t.Errorf("expired signature: %d %s", resp.StatusCode, body)
		}
		// A key is neither needed nor a way around the signature.
		resp = e.Do("GET", strings.TrimPrefix(bare.String(), e.APIURL), keyA, nil, nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("with an API key and no signature: %d", resp.StatusCode)
		}
	})

	t.Run("bad options are 422 naming the field", func(t *testing.T) {
		u := site.URL + "/report"
		cases := []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"url": u, "output": []string{"pdf"}}, "output[0]"},
			{map[string]any{"url": u, "render_js": true, "output": []string{"pdf"}, "pdf": map[string]any{"format": "B7"}}, "pdf.format"},
			{map[string]any{"url": u, "render_js": true, "pdf": map[string]any{"format": "A4"}}, "pdf"},
			{map[string]any{"url": u, "render_js": true, "output": []string{"screenshot"}, "screenshot": map[string]any{"format": "gif"}}, "screenshot.format"},
			{map[string]any{"url": u, "render_js": true, "output": []string{"screenshot"}, "screenshot": map[string]any{"format": "jpeg", "quality": 101}}, "screenshot.quality"},
			{map[string]any{"url": u, "render_js": true, "output": []string{"screenshot"}, "screenshot": map[string]any{"quality": 50}}, "screenshot.quality"},
			{map[string]any{"url": u, "render_js": true, "output": []string{"screenshot"}, "screenshot": map[string]any{"full_page": true, "selector": "#chart"}}, "screenshot.full_page"},
			{map[string]any{"url": u, "render_js": true, "screenshot": map[string]any{"selector": "#chart"}}, "screenshot"},
			{map[string]any{"url": u, "artifacts": "s3"}, "artifacts"},
		}
		for _, c := range cases {
			var p spec.Problem
			resp := e.Do("POST", "/v1/fetch", keyA, c.body, &p)
			if resp.StatusCode != http.StatusUnprocessableEntity || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%v: %d %s", c.body, resp.StatusCode, resp.Header.Get("Content-Type"))
				continue
			}
			found := false
			for _, fe := range p.Errors {
				found = found || fe.Field == c.field
			}
			if !found {
				t.Errorf("%v: errors %+v do not name %s", c.body, p.Errors, c.field)
			}
		}
	})
}

// TestArtifactRetention: an artifact goes with its job.
func TestArtifactRetention(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 2, Env: []string{
		"PAGEFLEET_ARTIFACTS_SECRET=" + artifactSecret, "PAGEFLEET_RESULT_TTL=4s", "PAGEFLEET_SWEEP_INTERVAL=300ms"}})
	site := artifactSite(t)
	r := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/report", "render_js": true,
		"output": []string{"screenshot"}, "artifacts": "url"})
	if r.Status != spec.StatusSucceeded {
		t.Fatalf("%s %+v", r.Status, r.Error)
	}
	shot := r.Result.Artifacts[spec.ArtifactScreenshot]
	if resp, _ := fetchArtifact(t, shot.URL); resp.StatusCode != 200 {
		t.Fatalf("GET the link during the job's retention: %d", resp.StatusCode)
	}
	dir := filepath.Join(e.dir, "artifacts", r.ID)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the job's artifacts are not in the store: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp := e.Do("GET", "/v1/jobs/"+r.ID, keyA, nil, nil)
		_, statErr := os.Stat(dir)
		if resp.StatusCode == http.StatusNotFound && os.IsNotExist(statErr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s on: job answers %d, store dir %v", resp.StatusCode, statErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp, body := fetchArtifact(t, shot.URL)
	if resp.StatusCode != http.StatusGone && resp.StatusCode != http.StatusNotFound {
		t.Errorf("the job's link after its retention: %d %s", resp.StatusCode, body)
	}
	// A link signed anew finds nothing: the artifact is gone with the job.
	resp, body = fetchArtifact(t, relink(t, shot.URL, time.Now().Add(time.Hour)))
	if resp.StatusCode != http.StatusNotFound || problemCode(t, resp, body) != "not_found" {
		t.Errorf("a fresh link after the job's retention: %d %s", resp.StatusCode, body)
	}
}

// TestArtifactsS3 runs the fleet on a real S3-compatible store.
func TestArtifactsS3(t *testing.T) {
	srv := s3test.Start(t, "pf-artifacts")
	env := append([]string{"PAGEFLEET_ARTIFACTS_SECRET=" + artifactSecret,
		"PAGEFLEET_ARTIFACTS_URL=" + srv.URL("pf-artifacts", "fleet1")}, srv.Env()...)
	e := Start(t, Options{Workers: 1, Concurrency: 2, Env: env})
	site := artifactSite(t)

	r := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/report", "render_js": true, "output": []string{"screenshot", "pdf"}})
	if r.Status != spec.StatusSucceeded {
		t.Fatalf("%s %+v", r.Status, r.Error)
	}
	if _, err := png.Decode(bytes.NewReader(r.Result.Screenshot)); err != nil {
		t.Fatalf("inline screenshot from S3: %v", err)
	}
	if r.Result.PDF == nil || !bytes.HasPrefix(r.Result.PDF.Data, []byte("%PDF-")) {
		t.Fatalf("inline pdf from S3: %+v", r.Result.PDF)
	}
	for name, file := range map[string]string{spec.ArtifactScreenshot: "screenshot.png", spec.ArtifactPDF: "page.pdf"} {
		a := r.Result.Artifacts[name]
		onDisk, err := os.ReadFile(filepath.Join(srv.Root, "pf-artifacts", "fleet1", r.ID, file))
		if err != nil {
			t.Fatalf("%s is not in the bucket: %v", name, err)
		}
		if hexSum(onDisk) != a.SHA256 {
			t.Errorf("%s in the bucket differs from the artifact %+v", name, a)
		}
		resp, body := fetchArtifact(t, a.URL)
		if resp.StatusCode != 200 || hexSum(body) != a.SHA256 || resp.Header.Get("Content-Type") != a.ContentType {
			t.Errorf("GET %s through the API: %d %s", name, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	resp, body := fetchArtifact(t, relink(t, r.Result.Artifacts[spec.ArtifactPDF].URL, time.Now().Add(-time.Second)))
	if resp.StatusCode != http.StatusGone {
		t.Errorf("expired link on S3: %d %s", resp.StatusCode, body)
	}
}
