package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/har"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Bounds of what a job records of its page.
const (
	// MaxNetworkBody bounds one body of the network output; a longer one
	// is cut and marked truncated.
	MaxNetworkBody = 10 << 20
	// MaxNetworkResponses bounds the responses the network output keeps.
	MaxNetworkResponses = 200
	// maxHAREntries bounds the requests a HAR lists (the first ones).
	maxHAREntries = 2000
	// maxConsole bounds the console messages kept (the last ones),
	// maxConsoleText the length of each and maxConsoleBytes their sum, so
	// that they stay well within a value of 64 KiB.
	maxConsole      = 200
	maxConsoleText  = 1000
	maxConsoleBytes = 40 << 10
	// diagnoseTimeout bounds the taking of diagnostics after a failure;
	// diagnoseOverrun bounds how far past the job's deadline they may go
	// (a job's timeout_ms is a promise: an attempt that timed out ends
	// about then, with what diagnostics could be taken in that moment).
	diagnoseTimeout = 5 * time.Second
	diagnoseOverrun = 1500 * time.Millisecond
)

// recorder keeps what a job records of its page besides the DOM: the
// requests (for the HAR and the network output), the console and the
// downloads. Its event handler runs on the tab's event loop, so it only
// updates state; reading response bodies runs in goroutines of the job.
type recorder struct {
	patterns []*regexp.Regexp // of the network output; nil: none kept
	console  bool             // keep console messages

	mu           sync.Mutex
	requests     map[network.RequestID]*harRequest
	order        []*harRequest
	frames       map[cdp.FrameID]bool // frames of the tab
	messages     []ConsoleMessage
	consoleBytes int
	kept         []keptResponse
	pending      map[network.RequestID]*keptResponse // matched, body not read yet
	reading      int                                 // bodies being read
	closed       bool                                // the job is closing: no more reads start
	downloads    map[string]*download                // by guid
	dlOrder      []*download
	changed      chan struct{} // closed and replaced when a body or a download is ready
}

// harRequest is one request of the page, and one entry of its HAR.
type harRequest struct {
	wall     time.Time // when it was sent
	ts       float64   // monotonic seconds when it was sent
	req      *network.Request
	typ      network.ResourceType
	resp     *network.Response
	end      float64 // monotonic seconds when it finished or failed
	received float64 // bytes received
	failed   string
}

// keptResponse is a response of the network output and its place.
type keptResponse struct {
	seq int
	r   NetworkResponse
}

// download is one download of the job.
type download struct {
	guid     string
	url      string
	filename string
	done     bool
	path     string
	size     int64
	err      string
}

// globRegexp compiles a URL pattern in which "*" matches any run of
// characters; the pattern matches the whole URL.
func globRegexp(p string) (*regexp.Regexp, error) {
	parts := strings.Split(p, "*")
	for i, s := range parts {
		parts[i] = regexp.QuoteMeta(s)
	}
	return regexp.Compile("^" + strings.Join(parts, ".*") + "$")
}

func newRecorder(req Request, main cdp.FrameID) *recorder {
	r := &recorder{
		console:   req.Diagnostics,
		requests:  map[network.RequestID]*harRequest{},
		frames:    map[cdp.FrameID]bool{main: true},
		pending:   map[network.RequestID]*keptResponse{},
		downloads: map[string]*download{},
		changed:   make(chan struct{}),
	}
	for _, p := range req.NetworkPatterns {
		if re, err := globRegexp(p); err == nil {
			r.patterns = append(r.patterns, re)
		}
	}
	return r
}

// matches reports whether the network output keeps a response of rawURL.
func (r *recorder) matches(rawURL string) bool {
	for _, re := range r.patterns {
		if re.MatchString(rawURL) {
			return true
		}
	}
	return false
}

// onEvent records one event of the tab. It returns the id of a kept
// response whose body is ready to be read ("" for none).
func (r *recorder) onEvent(ev any) network.RequestID {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e := ev.(type) {
	case *page.EventFrameAttached:
		r.frames[e.FrameID] = true
	case *page.EventFrameNavigated:
		r.frames[e.Frame.ID] = true
	case *network.EventRequestWillBeSent:
		if old := r.requests[e.RequestID]; old != nil && e.RedirectResponse != nil {
			// A redirect reuses the id: the old entry ends with the
			// redirect's response.
			old.resp = e.RedirectResponse
			old.end = float64(e.Timestamp)
			delete(r.requests, e.RequestID)
		}
		if len(r.order) >= maxHAREntries {
			return ""
		}
		h := &harRequest{
			wall: time.UnixMicro(int64(float64(e.WallTime) * 1e6)),
			ts:   float64(e.Timestamp),
			req:  e.Request,
			typ:  e.Type,
		}
		r.requests[e.RequestID] = h
		r.order = append(r.order, h)
	case *network.EventResponseReceived:
		if h := r.requests[e.RequestID]; h != nil {
			h.resp = e.Response
		}
		if len(r.patterns) > 0 && (e.Type == network.ResourceTypeXHR || e.Type == network.ResourceTypeFetch) &&
			len(r.kept)+len(r.pending) < MaxNetworkResponses && r.matches(e.Response.URL) {
			method := ""
			if h := r.requests[e.RequestID]; h != nil && h.req != nil {
				method = h.req.Method
			}
			r.pending[e.RequestID] = &keptResponse{r: NetworkResponse{
				URL: e.Response.URL, Method: method, Status: int(e.Response.Status), MIMEType: e.Response.MimeType,
			}}
		}
	case *network.EventLoadingFinished:
		if h := r.requests[e.RequestID]; h != nil {
			h.end, h.received = float64(e.Timestamp), e.EncodedDataLength
		}
		if _, ok := r.pending[e.RequestID]; ok {
			r.reading++
			return e.RequestID
		}
	case *network.EventLoadingFailed:
		if h := r.requests[e.RequestID]; h != nil {
			h.end, h.failed = float64(e.Timestamp), e.ErrorText
		}
		delete(r.pending, e.RequestID)
	case *runtime.EventConsoleAPICalled:
		if r.console {
			r.addMessageLocked(consoleLevel(e.Type), consoleText(e.Args))
		}
	case *runtime.EventExceptionThrown:
		if r.console && e.ExceptionDetails != nil {
			r.addMessageLocked("error", newJSError(e.ExceptionDetails).text)
		}
	}
	return ""
}

// addMessageLocked keeps a console message, dropping the oldest past
// maxConsole.
func (r *recorder) addMessageLocked(level, text string) {
	if len(text) > maxConsoleText {
		text = strings.ToValidUTF8(text[:maxConsoleText], "") + "…"
	}
	r.messages = append(r.messages, ConsoleMessage{Level: level, Text: text})
	r.consoleBytes += len(text)
	for len(r.messages) > maxConsole || r.consoleBytes > maxConsoleBytes {
		r.consoleBytes -= len(r.messages[0].Text)
		r.messages = append(r.messages[:0], r.messages[1:]...)
	}
}

// consoleLevel maps a console call to a level: log, info, debug, warning
// or error.
func consoleLevel(t runtime.ConsoleAPICalledType) string {
	switch t {
	case runtime.ConsoleAPICalledTypeWarning:
		return "warning"
	case runtime.ConsoleAPICalledTypeError, runtime.ConsoleAPICalledTypeAssert:
		return "error"
	case runtime.ConsoleAPICalledTypeInfo, runtime.ConsoleAPICalledTypeDebug:
		return string(t)
	}
	return "log"
}

// consoleText joins the arguments of a console call as the console shows
// them.
func consoleText(args []*runtime.RemoteObject) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case a == nil:
		case a.Type == runtime.RemoteObjectTypeString:
			var s string
			if json.Unmarshal(a.Value, &s) == nil {
				parts = append(parts, s)
			}
		case a.UnserializableValue != "":
			parts = append(parts, string(a.UnserializableValue))
		case len(a.Value) > 0:
			parts = append(parts, string(a.Value))
		case a.Description != "":
			parts = append(parts, a.Description)
		default:
			parts = append(parts, string(a.Type))
		}
	}
	return strings.Join(parts, " ")
}

// readBody reads the body of a kept response that finished loading.
func (j *job) readBody(id network.RequestID) {
	r := j.rec
	res, err := cdp.Call(j.ctx, j.t, network.GetResponseBody, network.GetResponseBodyParams{RequestID: id})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reading--
	r.changedLocked()
	k := r.pending[id]
	if k == nil {
		return
	}
	delete(r.pending, id)
	if err != nil {
		j.log.Debug("read a response body", "url", k.r.URL, "err", err)
		return
	}
	body := res.Body
	if len(body) > MaxNetworkBody {
		body, k.r.Truncated = body[:MaxNetworkBody], true
	}
	k.r.Body = body
	k.seq = len(r.kept)
	r.kept = append(r.kept, *k)
}

// networkResponses waits for the bodies being read and returns the kept
// responses.
func (j *job) networkResponses() []NetworkResponse {
	r := j.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.reading > 0 && j.ctx.Err() == nil {
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-j.ctx.Done():
		}
		r.mu.Lock()
	}
	out := make([]NetworkResponse, 0, len(r.kept))
	for _, k := range r.kept {
		out = append(out, k.r)
	}
	return out
}

// harLog builds the HAR 1.2 log of the requests so far.
func (j *job) harLog() ([]byte, error) {
	r := j.rec
	r.mu.Lock()
	entries := make([]*har.Entry, 0, len(r.order))
	for _, h := range r.order {
		entries = append(entries, h.entry())
	}
	r.mu.Unlock()
	sort.SliceStable(entries, func(a, b int) bool { return entries[a].StartedDateTime < entries[b].StartedDateTime })
	log := &har.HAR{Log: &har.Log{
		Version: "1.2",
		Creator: &har.Creator{Name: "pagefleet", Version: "1"},
		Browser: &har.Creator{Name: "Chromium", Version: chromeVersion(j.b.userAgent)},
		Entries: entries,
	}}
	return json.Marshal(log)
}

// chromeVersion finds Chrome's version in its user agent.
func chromeVersion(ua string) string {
	for _, f := range strings.Fields(ua) {
		if v, ok := strings.CutPrefix(f, "Chrome/"); ok {
			return v
		}
		if v, ok := strings.CutPrefix(f, "HeadlessChrome/"); ok {
			return v
		}
	}
	return ""
}

// entry is the HAR entry of one request.
func (h *harRequest) entry() *har.Entry {
	e := &har.Entry{
		StartedDateTime: h.wall.UTC().Format("2006-01-02T15:04:05.000Z"),
		Cache:           &har.Cache{},
		Timings:         &har.Timings{Send: 0, Wait: 0, Receive: 0},
	}
	req := &har.Request{Method: "GET", HTTPVersion: "", Cookies: []*har.Cookie{}, Headers: []*har.NameValuePair{},
		QueryString: []*har.NameValuePair{}, HeadersSize: -1, BodySize: 0}
	if h.req != nil {
		req.Method, req.URL = h.req.Method, h.req.URL
		req.Headers = harHeaders(h.req.Headers)
		if u, err := url.Parse(h.req.URL); err == nil {
			for k, vs := range u.Query() {
				for _, v := range vs {
					req.QueryString = append(req.QueryString, &har.NameValuePair{Name: k, Value: v})
				}
			}
			sort.Slice(req.QueryString, func(a, b int) bool { return req.QueryString[a].Name < req.QueryString[b].Name })
		}
		if h.req.HasPostData {
			req.BodySize = -1
		}
	}
	resp := &har.Response{Cookies: []*har.Cookie{}, Headers: []*har.NameValuePair{}, Content: &har.Content{MimeType: ""},
		HeadersSize: -1, BodySize: -1}
	if p := h.resp; p != nil {
		resp.Status, resp.StatusText = p.Status, p.StatusText
		if resp.StatusText == "" {
			resp.StatusText = http.StatusText(int(p.Status))
		}
		resp.HTTPVersion = httpVersion(p.Protocol)
		req.HTTPVersion = resp.HTTPVersion
		resp.Headers = harHeaders(p.Headers)
		for _, hv := range resp.Headers {
			if strings.EqualFold(hv.Name, "location") {
				resp.RedirectURL = hv.Value
			}
		}
		resp.Content.MimeType = p.MimeType
		if h.received > 0 {
			resp.BodySize = int64(h.received)
			resp.Content.Size = int64(h.received)
		}
		if t := p.Timing; t != nil {
			send := max(0, t.SendEnd-t.SendStart)
			wait := max(0, t.ReceiveHeadersEnd-t.SendEnd)
			e.Timings.Send, e.Timings.Wait = send, wait
			if h.end > 0 {
				e.Timings.Receive = max(0, (h.end-t.RequestTime)*1000-t.ReceiveHeadersEnd)
			}
		}
		if p.RemoteIPAddress != "" {
			e.ServerIPAddress = strings.Trim(p.RemoteIPAddress, "[]")
		}
	}
	if h.failed != "" {
		resp.Comment = h.failed
		e.Comment = "failed: " + h.failed
	}
	if req.HTTPVersion == "" {
		req.HTTPVersion, resp.HTTPVersion = "HTTP/1.1", "HTTP/1.1"
	}
	// HAR's time is the sum of the timings: what the request spent before
	// it was sent (queueing, DNS, connecting) counts as blocked.
	e.Time = e.Timings.Send + e.Timings.Wait + e.Timings.Receive
	if total := (h.end - h.ts) * 1000; h.end > h.ts && total > e.Time {
		blocked := total - e.Time
		e.Timings.Blocked = &blocked
		e.Time = total
	}
	e.Request, e.Response = req, resp
	return e
}

// httpVersion maps Chrome's protocol name to a HAR HTTP version.
func httpVersion(p string) string {
	switch strings.ToLower(p) {
	case "h2":
		return "HTTP/2.0"
	case "h3", "http/3":
		return "HTTP/3.0"
	case "http/1.0":
		return "HTTP/1.0"
	case "":
		return ""
	}
	return "HTTP/1.1"
}

// harHeaders turns Chrome's headers into sorted HAR name/value pairs.
func harHeaders(hs network.Headers) []*har.NameValuePair {
	out := make([]*har.NameValuePair, 0, len(hs))
	for k, v := range hs {
		for _, line := range strings.Split(fmt.Sprint(v), "\n") {
			out = append(out, &har.NameValuePair{Name: k, Value: line})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// consoleMessages returns the console messages so far.
func (j *job) consoleMessages() []ConsoleMessage {
	j.rec.mu.Lock()
	defer j.rec.mu.Unlock()
	return append([]ConsoleMessage{}, j.rec.messages...)
}

// diagnose takes the diagnostics of a failed job: a screenshot of the
// viewport, the DOM, the console and the HAR. It works after the job's
// deadline, for at most diagnoseTimeout and no more than diagnoseOverrun
// past the deadline, and returns what it could take.
func (j *job) diagnose() *Diagnostics {
	if !j.req.Diagnostics || j.tab.ctx.Err() != nil {
		return nil
	}
	if err := j.caller.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil // cancelled (by the user, or a worker that stops): nobody will look
	}
	limit := time.Now().Add(diagnoseTimeout)
	if dl, ok := j.caller.Deadline(); ok && dl.Add(diagnoseOverrun).Before(limit) {
		limit = dl.Add(diagnoseOverrun)
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(j.caller), limit)
	defer cancel()
	stop := context.AfterFunc(j.tab.ctx, cancel)
	defer stop()
	d := &Diagnostics{Console: j.consoleMessages()}
	// Right after a failed navigation Chrome is still swapping in its
	// error page ("Not attached to an active page"): try again shortly.
	for try := 0; try < 12 && ctx.Err() == nil; try++ {
		if try > 0 {
			select {
			case <-time.After(150 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		var err error
		if d.Screenshot == nil {
			var shot page.CaptureScreenshotResult
			if shot, err = cdp.Call(ctx, j.t, page.CaptureScreenshot, page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormatPng}); err == nil {
				d.Screenshot = shot.Data
			}
		}
		if d.DOM == "" && err == nil {
			var out [2]string
			if err = j.evaluateInto(ctx, htmlScript, &out); err == nil {
				d.DOM = out[1]
			}
		}
		if err == nil {
			break
		}
		j.log.Debug("diagnostics: capture the page", "try", try, "err", err)
	}
	if b, err := j.harLog(); err == nil {
		d.HAR = b
	}
	return d
}

// DiagnosedError is the error of a job that failed without a result, with
// the diagnostics taken at the failure.
type DiagnosedError struct {
	Err         error
	Diagnostics *Diagnostics
}

func (e *DiagnosedError) Error() string { return e.Err.Error() }

// Unwrap returns the job's error.
func (e *DiagnosedError) Unwrap() error { return e.Err }

// failed adds the diagnostics to the error of a job without a result.
func (j *job) failed(err error) error {
	if err == nil {
		return nil
	}
	if d := j.diagnose(); d != nil {
		return &DiagnosedError{Err: err, Diagnostics: d}
	}
	return err
}

// enableDownloads lets the job's browser context download into a
// directory of the job's own, with events.
func (j *job) enableDownloads(ctx context.Context) error {
	dir, err := os.MkdirTemp(j.p.cfg.DownloadDir, "pagefleet-dl-")
	if err != nil {
		return fmt.Errorf("download directory: %w", err)
	}
	j.dlDir = dir
	_, err = cdp.Call(ctx, j.b.browser, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior:         cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName,
		BrowserContextID: j.tab.bctx,
		DownloadPath:     dir,
		EventsEnabled:    new(true),
	})
	return err
}

// followDownloads follows the browser's download events, keeping those of
// the job's frames.
func (j *job) followDownloads() {
	// A popup of the job's browser context (a link with target=_blank)
	// downloads in a frame of its own: its main frame's id is its
	// target's.
	created := cdp.Events(j.ctx, j.b.browser, target.TargetCreated)
	j.wg.Go(func() {
		for ev, err := range created {
			if err != nil {
				return
			}
			if ev.TargetInfo != nil && ev.TargetInfo.BrowserContextID == j.tab.bctx {
				j.rec.mu.Lock()
				j.rec.frames[cdp.FrameID(ev.TargetInfo.TargetID)] = true
				j.rec.mu.Unlock()
			}
		}
	})
	begins := cdp.Events(j.ctx, j.b.browser, cdpbrowser.DownloadWillBegin)
	progress := cdp.Events(j.ctx, j.b.browser, cdpbrowser.DownloadProgress)
	j.wg.Go(func() {
		for ev, err := range begins {
			if err != nil {
				return
			}
			j.downloadBegins(&ev)
		}
	})
	j.wg.Go(func() {
		for ev, err := range progress {
			if err != nil {
				return
			}
			j.downloadProgress(&ev)
		}
	})
}

// downloadBegins records a download of one of the job's frames.
func (j *job) downloadBegins(ev *cdpbrowser.EventDownloadWillBegin) {
	r := j.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.frames[ev.FrameID] {
		return // another job's
	}
	d := &download{guid: ev.GUID, url: ev.URL, filename: safeFilename(ev.SuggestedFilename)}
	r.downloads[ev.GUID] = d
	r.dlOrder = append(r.dlOrder, d)
	if len(r.dlOrder) > j.p.cfg.MaxDownloads {
		d.done, d.err = true, fmt.Sprintf("more than %d downloads", j.p.cfg.MaxDownloads)
		j.wg.Go(func() { j.cancelDownload(ev.GUID) })
	}
	r.changedLocked()
}

// downloadProgress follows a download of the job.
func (j *job) downloadProgress(ev *cdpbrowser.EventDownloadProgress) {
	r := j.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.downloads[ev.GUID]
	if d == nil || d.done {
		return
	}
	limit := j.p.cfg.MaxDownloadBytes
	switch {
	case ev.State == cdpbrowser.DownloadProgressStateCompleted:
		d.done, d.size = true, int64(ev.ReceivedBytes)
		d.path = ev.FilePath
		if d.path == "" {
			d.path = filepath.Join(j.dlDir, ev.GUID)
		}
	case ev.State == cdpbrowser.DownloadProgressStateCanceled:
		d.done, d.err = true, "the download was cancelled"
	case int64(ev.ReceivedBytes) > limit || int64(ev.TotalBytes) > limit:
		d.done, d.err = true, fmt.Sprintf("larger than the limit of %d bytes", limit)
		j.wg.Go(func() { j.cancelDownload(ev.GUID) })
	default:
		return
	}
	r.changedLocked()
}

// changedLocked wakes the waits for bodies and downloads.
func (r *recorder) changedLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// cancelDownload stops a download of the job's browser context.
func (j *job) cancelDownload(guid string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), 5*time.Second)
	defer cancel()
	_, _ = cdp.Call(ctx, j.b.browser, cdpbrowser.CancelDownload, cdpbrowser.CancelDownloadParams{GUID: guid, BrowserContextID: j.tab.bctx})
}

// downloadGrace is how long a job waits after its last action for a
// download the action may have started to begin; uncommittedGrace is the
// wait when the action started a navigation that committed no document
// (a file served as an attachment becomes a download that way).
const (
	downloadGrace    = 250 * time.Millisecond
	uncommittedGrace = 3 * time.Second
)

// abortedText is how Chrome ends the document request of a navigation
// whose response it turns into a download.
const abortedText = "net::ERR_ABORTED"

// collectDownloads waits until the job's downloads end (while the job's
// context lasts) and reads them. It first waits a moment for a download
// that has not begun yet: downloadGrace when the last action may have
// started one (mayDownload), uncommittedGrace when the page started a
// navigation that committed no document (a script or a click that went to
// an attachment), unless a download began already.
func (j *job) collectDownloads(mayDownload bool) []Download {
	r := j.rec
	j.mu.Lock()
	var wait time.Duration
	switch {
	case j.navStarts > 1 && j.commits[j.startedLoader] == 0 && j.docFailed[j.startedLoader] == abortedText:
		// The navigation ended without a document: its response became a
		// download (Chrome aborts the document's request then).
		wait = uncommittedGrace
	case mayDownload:
		wait = downloadGrace
	}
	j.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
	graceLoop:
		for {
			r.mu.Lock()
			begun := len(r.dlOrder) > 0
			ch := r.changed
			r.mu.Unlock()
			if begun {
				break
			}
			select {
			case <-t.C:
				break graceLoop
			case <-j.ctx.Done():
				break graceLoop
			case <-ch:
			}
		}
	}
	for {
		r.mu.Lock()
		busy := false
		for _, d := range r.dlOrder {
			busy = busy || !d.done
		}
		ch := r.changed
		r.mu.Unlock()
		if !busy {
			break
		}
		select {
		case <-ch:
			continue
		case <-j.ctx.Done():
		}
		break
	}
	r.mu.Lock()
	list := append([]*download{}, r.dlOrder...)
	r.mu.Unlock()
	var out []Download
	for _, d := range list {
		dl := Download{Filename: d.filename, URL: d.url, MIMEType: j.downloadType(d), Size: d.size, Error: d.err}
		switch {
		case !d.done:
			dl.Error = "the download did not finish before the job's deadline"
		case d.err == "":
			if !within(d.path, j.dlDir) {
				dl.Error = "the download was saved elsewhere"
				break
			}
			data, err := os.ReadFile(d.path)
			if err != nil {
				dl.Error = "read the downloaded file: " + err.Error()
				break
			}
			if int64(len(data)) > j.p.cfg.MaxDownloadBytes {
				dl.Error = fmt.Sprintf("larger than the limit of %d bytes", j.p.cfg.MaxDownloadBytes)
				break
			}
			dl.Data, dl.Size = data, int64(len(data))
			if dl.MIMEType == "" {
				dl.MIMEType = http.DetectContentType(data)
			}
		}
		out = append(out, dl)
	}
	return out
}

// within reports whether path lies in dir.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel)
}

// downloadType is a download's MIME type: that of the response the job saw
// for its URL, or the one of its file name's extension.
func (j *job) downloadType(d *download) string {
	r := j.rec
	r.mu.Lock()
	for i := len(r.order) - 1; i >= 0; i-- {
		h := r.order[i]
		if h.resp != nil && h.resp.URL == d.url && h.resp.MimeType != "" {
			r.mu.Unlock()
			return h.resp.MimeType
		}
	}
	r.mu.Unlock()
	if t := mime.TypeByExtension(filepath.Ext(d.filename)); t != "" {
		return t
	}
	return ""
}

// safeFilename keeps the base name of a suggested file name, valid UTF-8
// of at most 255 bytes ("download" when nothing is left).
func safeFilename(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	name = strings.ToValidUTF8(name, "_")
	for len(name) > 255 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	if name == "" || name == "." || name == "/" || name == ".." {
		return "download"
	}
	return name
}

// mayDownload reports whether the last action may have started a download
// that has not begun yet (a click, a key press, a script).
func mayDownload(actions []spec.Action) bool {
	if len(actions) == 0 {
		return false
	}
	switch actions[len(actions)-1].Type {
	case spec.ActClick, spec.ActPress, spec.ActEvaluate, spec.ActSelect:
		return true
	}
	return false
}
