package browser

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

//go:embed js/wait.js
var waitJS string

// Waits of the actions.
const (
	// scrollSettle is how long the network must stay quiet after a scroll
	// to the bottom before the next action runs.
	scrollSettle = 300 * time.Millisecond
	// scrollSettleMax bounds that wait.
	scrollSettleMax = 5 * time.Second
	// retryContextWait bounds the wait for a new document's script context
	// when a navigation replaced the document under an element wait.
	retryContextWait = 200 * time.Millisecond
)

// runActions runs the job's actions in order and stops at the first failure,
// which it returns as an action_failed error.
func (j *job) runActions() ([]ActionResult, error) {
	if len(j.req.Actions) == 0 {
		return nil, nil
	}
	out := make([]ActionResult, 0, len(j.req.Actions))
	for i, a := range j.req.Actions {
		start := time.Now()
		r := ActionResult{Index: i, Type: a.Type}
		err := j.runAction(&r, a)
		r.DurationMs = time.Since(start).Milliseconds()
		if err == nil {
			r.Status = StatusOK
			out = append(out, r)
			continue
		}
		r.Status = StatusFailed
		r.Error = j.actionErrorText(err)
		out = append(out, r)
		se := spec.Errorf(spec.CodeActionFailed, false, "action %d (%s) failed: %s", i, a.Type, r.Error)
		se.Action = &i
		return out, wrap(se, err)
	}
	return out, nil
}

// actionErrorText describes why an action failed.
func (j *job) actionErrorText(err error) string {
	if cerr := j.caller.Err(); cerr != nil && isContextErr(err) {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return "the job's deadline passed during the action"
		}
		return "the job was cancelled during the action"
	}
	return err.Error()
}

// actionTimeout returns the action's own timeout.
func actionTimeout(a spec.Action) time.Duration {
	if a.TimeoutMs > 0 {
		return time.Duration(a.TimeoutMs) * time.Millisecond
	}
	return spec.DefaultActionMs * time.Millisecond
}

// runAction runs one action and fills r.
func (j *job) runAction(r *ActionResult, a spec.Action) error {
	timeout := actionTimeout(a)
	ctx, cancel := context.WithTimeout(j.ctx, timeout)
	defer cancel()
	switch a.Type {
	case spec.ActWait:
		t := time.NewTimer(time.Duration(a.Ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-j.ctx.Done():
			return j.ctx.Err()
		}

	case spec.ActWaitFor:
		st := a.State
		if st == "" {
			st = "visible"
		}
		_, err := j.waitElement(ctx, a.Selector, st, waitOpts{}, timeout)
		return err

	case spec.ActClick:
		w, err := j.waitElement(ctx, a.Selector, "visible", waitOpts{Enabled: true, Point: true}, timeout)
		if err != nil {
			return err
		}
		m := j.mark()
		if err := j.mouse(ctx, w.X, w.Y, true); err != nil {
			return err
		}
		return j.settle(m, timeout)

	case spec.ActHover:
		w, err := j.waitElement(ctx, a.Selector, "visible", waitOpts{Point: true}, timeout)
		if err != nil {
			return err
		}
		return j.mouse(ctx, w.X, w.Y, false)

	case spec.ActType:
		if err := j.focus(ctx, a.Selector, timeout); err != nil {
			return err
		}
		m := j.mark()
		if _, err := chromedp.KeyEvent(a.Value)(ctx, j.t); err != nil {
			return err
		}
		return j.settle(m, timeout)

	case spec.ActPress:
		if a.Selector != "" {
			if err := j.focus(ctx, a.Selector, timeout); err != nil {
				return err
			}
		}
		keys, mods, err := parseKey(a.Key)
		if err != nil {
			return err
		}
		m := j.mark()
		if _, err := chromedp.KeyEvent(keys, chromedp.KeyModifiers(mods...))(ctx, j.t); err != nil {
			return err
		}
		return j.settle(m, timeout)

	case spec.ActSelect:
		if _, err := j.waitElement(ctx, a.Selector, "visible", waitOpts{Enabled: true, Scroll: true}, timeout); err != nil {
			return err
		}
		m := j.mark()
		if _, err := j.evaluate(ctx, call(selectScript, a.Selector, a.Value)); err != nil {
			return err
		}
		return j.settle(m, timeout)

	case spec.ActScroll:
		switch {
		case a.Selector != "":
			_, err := j.waitElement(ctx, a.Selector, "visible", waitOpts{Scroll: true}, timeout)
			return err
		case a.To == "top":
			_, err := j.evaluate(ctx, `window.scrollTo(0, 0)`)
			return err
		default:
			return j.scrollToBottom(ctx, timeout)
		}

	case spec.ActEvaluate:
		v, err := j.evaluateAction(ctx, a.Script)
		r.Result = v
		return err

	case spec.ActScreenshot:
		png, err := j.screenshot(j.ctx)
		r.Screenshot = png
		return err

	case spec.ActNavigate:
		if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("invalid URL %q: must be an absolute http or https URL", a.URL)
		}
		nctx := j.ctx
		if a.TimeoutMs > 0 {
			nctx = ctx
		}
		err := j.navigate(nctx, a.URL)
		var ne *navError
		var ee *egressError
		switch {
		case errors.As(err, &ne):
			return fmt.Errorf("navigate to %s: %s", a.URL, ne.text)
		case errors.As(err, &ee):
			return fmt.Errorf("the egress proxy refused %s: %s", a.URL, ee.code)
		case err != nil && j.ctx.Err() == nil && isContextErr(err):
			return fmt.Errorf("%s did not finish loading within %v", a.URL, timeout)
		}
		return err
	}
	return fmt.Errorf("unknown action type %q", a.Type)
}

// call builds a call of the function expression fn with JSON arguments.
func call(fn string, args ...any) string {
	var b strings.Builder
	b.WriteString("(")
	b.WriteString(fn)
	b.WriteString(")(")
	for i, a := range args {
		if i > 0 {
			b.WriteString(",")
		}
		data, _ := json.Marshal(a)
		b.Write(data)
	}
	b.WriteString(")")
	return b.String()
}

// waitOpts are the options of wait.js.
type waitOpts struct {
	Enabled bool  `json:"enabled"`
	Point   bool  `json:"point"`
	Scroll  bool  `json:"scroll"`
	Timeout int64 `json:"timeout"`
}

// waitResult is the answer of wait.js.
type waitResult struct {
	OK     bool    `json:"ok"`
	X      float64 `json:"x"`
	Y      float64 `json:"y"`
	Reason string  `json:"reason"`
}

// waitElement waits until the element of sel is in state st, across
// navigations of the main frame, for at most timeout.
func (j *job) waitElement(ctx context.Context, sel, st string, o waitOpts, timeout time.Duration) (waitResult, error) {
	deadline := time.Now().Add(timeout)
	reason := "not found"
	for {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		o.Timeout = left.Milliseconds()
		j.mu.Lock()
		contexts := j.contexts
		j.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, left+time.Second)
		var w waitResult
		err := j.evaluateInto(cctx, call(waitJS, sel, st, o), &w)
		cancel()
		if err == nil {
			if w.OK {
				return w, nil
			}
			reason = w.Reason
			break
		}
		var je *jsError
		if errors.As(err, &je) {
			return w, fmt.Errorf("selector %q: %s", sel, je.text)
		}
		if j.ctx.Err() != nil {
			return w, j.ctx.Err()
		}
		if ctx.Err() != nil {
			break
		}
		// A navigation replaced the document under the wait: wait for the
		// new document's script context, then look again.
		wctx, wcancel := context.WithTimeout(ctx, retryContextWait)
		_ = j.waitUntil(wctx, func() (bool, error) { return j.contexts > contexts, nil })
		wcancel()
	}
	return waitResult{}, fmt.Errorf("timed out after %v waiting for %q to be %s (%s)", timeout, sel, st, reason)
}

// focusScript focuses an element and puts the caret at the end of its text.
const focusScript = `(sel) => {
  const el = document.querySelector(sel);
  if (!el) throw new Error('element not found');
  el.focus();
  if (typeof el.value === 'string' && typeof el.setSelectionRange === 'function') {
    try { el.setSelectionRange(el.value.length, el.value.length); } catch (e) {}
  }
  const a = document.activeElement;
  return a === el || el.contains(a) || (a && a.shadowRoot && el === a);
}`

// focus waits for an enabled, visible element and focuses it.
func (j *job) focus(ctx context.Context, sel string, timeout time.Duration) error {
	if _, err := j.waitElement(ctx, sel, "visible", waitOpts{Enabled: true, Scroll: true}, timeout); err != nil {
		return err
	}
	var ok bool
	if err := j.evaluateInto(ctx, call(focusScript, sel), &ok); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("element %q cannot take the focus", sel)
	}
	return nil
}

// selectScript chooses the option of a <select> by value, else by label, and
// dispatches input and change.
const selectScript = `(sel, value) => {
  const el = document.querySelector(sel);
  if (!el) throw new Error('element not found');
  if (el.tagName !== 'SELECT') throw new Error('element is a <' + el.tagName.toLowerCase() + '>, not a <select>');
  const opts = [...el.options];
  const opt = opts.find((o) => o.value === value) || opts.find((o) => o.label === value || o.text.trim() === value);
  if (!opt) throw new Error('no option with value or label ' + JSON.stringify(value));
  el.focus();
  if (el.multiple) for (const o of opts) o.selected = false;
  opt.selected = true;
  el.dispatchEvent(new Event('input', {bubbles: true, composed: true}));
  el.dispatchEvent(new Event('change', {bubbles: true}));
  return el.value;
}`

// mouse moves the mouse to x, y and clicks there when click is set.
func (j *job) mouse(ctx context.Context, x, y float64, click bool) error {
	steps := []input.DispatchMouseEventParams{{Type: input.DispatchMouseEventTypeMouseMoved, X: x, Y: y}}
	if click {
		steps = append(steps,
			input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMousePressed, X: x, Y: y,
				Button: input.MouseButtonLeft, Buttons: 1, ClickCount: 1},
			input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMouseReleased, X: x, Y: y,
				Button: input.MouseButtonLeft, ClickCount: 1})
	}
	for _, p := range steps {
		if _, err := cdp.Call(ctx, j.t, input.DispatchMouseEvent, p); err != nil {
			return err
		}
	}
	return nil
}

// navMark is the count of main-frame navigation events at one moment.
type navMark struct{ starts, commits, stops int }

// mark records the navigation counts before an input.
func (j *job) mark() navMark {
	j.mu.Lock()
	defer j.mu.Unlock()
	return navMark{j.navStarts, j.commitSeq, j.stoppedLoading}
}

// settle runs after an input that may navigate (click, key, select). When
// the input started a navigation of the main frame, it waits, for at most
// timeout, until the new document commits and loads, or the navigation ends
// without a document (a download, a 204, a cancel).
func (j *job) settle(m navMark, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(j.ctx, timeout)
	defer cancel()
	// Let the page run the tasks the input queued: a form submission or a
	// location change starts in one of them.
	_, _ = j.evaluate(ctx, `new Promise((r) => setTimeout(() => setTimeout(r, 0), 0))`)
	j.mu.Lock()
	started := j.navStarts > m.starts || j.commitSeq > m.commits
	j.mu.Unlock()
	if !started {
		return nil
	}
	err := j.waitUntil(ctx, func() (bool, error) {
		if j.commitSeq > m.commits {
			return j.lifecycle[j.committed]["load"], nil
		}
		if _, failed := j.docFailed[j.startedLoader]; failed {
			return true, nil
		}
		return j.stoppedLoading > m.stops, nil
	})
	if err != nil && j.ctx.Err() != nil {
		return err
	}
	return nil // a slow load does not fail the action: later waits look at the page
}

// keyNames maps DOM key names and codes ("Enter", "ArrowDown", "KeyA",
// "Space") to the runes that chromedp's kb package encodes.
var keyNames, keyNamesFold = func() (map[string]rune, map[string]rune) {
	runes := make([]rune, 0, len(kb.Keys))
	for r := range kb.Keys {
		runes = append(runes, r)
	}
	slices.Sort(runes)
	names, fold := map[string]rune{}, map[string]rune{}
	add := func(name string, r rune) {
		if name == "" {
			return
		}
		if _, ok := names[name]; !ok {
			names[name] = r
		}
		if _, ok := fold[strings.ToLower(name)]; !ok {
			fold[strings.ToLower(name)] = r
		}
	}
	for _, r := range runes {
		add(kb.Keys[r].Key, r)
	}
	for _, r := range runes {
		add(kb.Keys[r].Code, r)
	}
	return names, fold
}()

// parseKey parses a key such as "Enter", "a", "ArrowDown" or "Control+a"
// into the rune to send and its modifiers.
func parseKey(key string) (string, []chromedp.Modifier, error) {
	parts := strings.Split(key, "+")
	if len(parts) > 1 && parts[len(parts)-1] == "" { // "Control++"
		parts = append(parts[:len(parts)-2], "+")
	}
	var mods []chromedp.Modifier
	for _, p := range parts[:len(parts)-1] {
		switch strings.ToLower(p) {
		case "control", "ctrl":
			mods = append(mods, chromedp.ModifierCtrl)
		case "shift":
			mods = append(mods, chromedp.ModifierShift)
		case "alt", "option":
			mods = append(mods, chromedp.ModifierAlt)
		case "meta", "command", "cmd":
			mods = append(mods, chromedp.ModifierMeta)
		default:
			return "", nil, fmt.Errorf("unknown modifier %q in key %q", p, key)
		}
	}
	name := parts[len(parts)-1]
	if utf8.RuneCountInString(name) == 1 {
		return name, mods, nil
	}
	if r, ok := keyNames[name]; ok {
		return string(r), mods, nil
	}
	if r, ok := keyNamesFold[strings.ToLower(name)]; ok {
		return string(r), mods, nil
	}
	return "", nil, fmt.Errorf("unknown key %q", key)
}

// scrollToBottom scrolls to the bottom of the document and waits until the
// network is quiet, so that content loaded by the scroll is in the page.
func (j *job) scrollToBottom(ctx context.Context, timeout time.Duration) error {
	start := time.Now()
	if _, err := j.evaluate(ctx, `(() => {
  const s = document.scrollingElement || document.documentElement;
  window.scrollTo(0, s.scrollHeight);
  return s.scrollHeight;
})()`); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, min(timeout, scrollSettleMax))
	defer cancel()
	// Scroll events fire with the next frames; their handlers start the
	// requests for more content.
	_, _ = j.evaluate(sctx, `new Promise((r) => { requestAnimationFrame(() => requestAnimationFrame(r)); setTimeout(r, 200); })`)
	if err := j.networkQuiet(sctx, start, scrollSettle); err != nil && j.ctx.Err() != nil {
		return err
	}
	return nil
}

// networkQuiet waits until no request is in flight and none started or ended
// for quiet, counting from since at the earliest.
func (j *job) networkQuiet(ctx context.Context, since time.Time, quiet time.Duration) error {
	for {
		j.mu.Lock()
		busy := len(j.inflight) > 0
		last := j.lastNet
		ch := j.changed
		j.mu.Unlock()
		if last.Before(since) {
			last = since
		}
		wait := quiet
		if !busy {
			wait = quiet - time.Since(last)
			if wait <= 0 {
				return nil
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

// returnRe finds a return statement in a script.
var returnRe = regexp.MustCompile(`\breturn\b`)

// evaluateAction runs an evaluate action's script: an expression (promises
// awaited, top-level await allowed), an object literal, a function (called),
// or a function body with return statements. It returns the result as JSON.
func (j *job) evaluateAction(ctx context.Context, script string) (json.RawMessage, error) {
	trimmed := strings.TrimSpace(script)
	var obj *runtime.RemoteObject
	var err error
	if strings.HasPrefix(trimmed, "{") && strings.HasSuffix(trimmed, "}") {
		// An object literal, not a block. A syntax error runs nothing.
		obj, err = j.evaluateScript(ctx, "("+trimmed+"\n)", false)
		if isSyntaxError(err) {
			obj, err = nil, nil
		}
	}
	if obj == nil && err == nil {
		obj, err = j.evaluateScript(ctx, script, false)
	}
	if isSyntaxError(err) {
		// A function body with return, or an expression with a top-level
		// await: the parser stopped before anything ran.
		if returnRe.MatchString(script) {
			obj, err = j.evaluateScript(ctx, "(async () => {\n"+script+"\n})()", false)
		} else {
			obj, err = j.evaluateScript(ctx, script, true)
		}
	}
	if err == nil && obj.Type == runtime.RemoteObjectTypeFunction {
		obj, err = j.evaluateScript(ctx, "("+trimmed+"\n)()", false)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case obj.Type == runtime.RemoteObjectTypeUndefined:
		return nil, nil
	case obj.UnserializableValue != "":
		return json.Marshal(string(obj.UnserializableValue))
	case len(obj.Value) > 0:
		return json.RawMessage(obj.Value), nil
	}
	return json.RawMessage("null"), nil
}

// isSyntaxError reports whether err is a script's syntax error.
func isSyntaxError(err error) bool {
	var je *jsError
	return errors.As(err, &je) && strings.HasPrefix(je.text, "SyntaxError")
}

// evaluateScript is evaluate with top-level await when repl is set.
func (j *job) evaluateScript(ctx context.Context, expr string, repl bool) (*runtime.RemoteObject, error) {
	res, err := cdp.Call(ctx, j.t, runtime.Evaluate, runtime.EvaluateParams{
		Expression:    expr,
		ReturnByValue: new(true),
		AwaitPromise:  new(true),
		UserGesture:   new(true),
		ReplMode:      new(repl),
	})
	if err != nil {
		return nil, err
	}
	if res.ExceptionDetails != nil {
		return nil, newJSError(res.ExceptionDetails)
	}
	return res.Result, nil
}
