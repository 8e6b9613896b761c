package browser_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// TestPreCreatedContextIsFresh runs job A, which leaves a cookie,
// localStorage, sessionStorage and IndexedDB behind, then job B on the same
// origin in a context the pool created in advance (while nothing ran), and
// proves B sees none of A's state and ran in another tab than A.
func TestPreCreatedContextIsFresh(t *testing.T) {
	t.Parallel()
	p := startPool(t, browser.Config{Browsers: 1, ContextsPerBrowser: 1, WarmTabs: 1, AllowPrivate: true})
	waitSpare := func() []string {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for time.Now().Before(deadline) {
			if ids := p.SpareTargets(); len(ids) > 0 {
				return ids
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("no pre-created context within 45s")
		return nil
	}

	id := "iso" + strconv.FormatInt(time.Now().UnixNano(), 36)
	urlA := ts.URL + "/state/set?id=" + id + "&isolation-probe=a"
	urlB := ts.URL + "/state/check?id=" + id + "&isolation-probe=b"
	waitSpare()
	if _, err := renderOn(t, p, browser.Request{URL: urlA, Actions: []spec.Action{{Type: spec.ActWaitFor, Selector: "#saved"}}}, 45*time.Second); err != nil {
		t.Fatal(err)
	}
	spares := waitSpare() // made after A ended, before B was asked for
	res, err := renderOn(t, p, browser.Request{URL: urlB,
		Actions: []spec.Action{{Type: spec.ActWaitFor, Selector: "#idb[data-done]", State: "attached"}}}, 45*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a, b := browser.TargetOf(urlA), browser.TargetOf(urlB)
	if a == "" || b == "" || a == b {
		t.Errorf("job A ran in tab %q, job B in %q: want two different tabs", a, b)
	}
	if !slices.Contains(spares, b) {
		t.Errorf("job B ran in tab %q, not in a pre-created one (%v)", b, spares)
	}
	if reqs := ts.seen("/state/check", "id="+id); len(reqs) != 1 || len(reqs[0].Cookies()) != 0 {
		t.Errorf("job B sent cookies: %v", reqs)
	}
	for _, want := range []string{"ls=null", "ss=null", "idb=none"} {
		if !strings.Contains(res.HTML, want) {
			t.Errorf("job A's state is visible to job B: lacks %q\n%s", want, res.HTML)
		}
	}
}
