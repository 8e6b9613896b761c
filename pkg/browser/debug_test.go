package browser_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/browser"
)

func stats(d []time.Duration) string {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	var sum time.Duration
	for _, x := range d { sum += x }
	return fmt.Sprintf("n=%d median=%v mean=%v min=%v max=%v", len(d), d[len(d)/2].Round(time.Millisecond), (sum / time.Duration(len(d))).Round(time.Millisecond), d[0].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}

func TestDebug(t *testing.T) {
	var imgs strings.Builder
	for i := range 40 { fmt.Fprintf(&imgs, `<img src="/img/%d.png" width=10 height=10>`, i) }
	heavy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/img/") { time.Sleep(20 * time.Millisecond); w.Header().Set("Content-Type", "image/png"); w.Write(onePixelPNG); return }
		fmt.Fprintf(w, "<!doctype html><html><body>%s</body></html>", imgs.String())
	}))
	defer heavy.Close()
	pools := map[int]*browser.Pool{}
	for _, warm := range []int{1, -1} {
		p, _ := browser.New(browser.Config{WarmTabs: warm})
		p.Start(context.Background())
		defer p.Stop(context.Background())
		pools[warm] = p
	}
	spaced := map[int][]time.Duration{}
	tight := map[int][]time.Duration{}
	blocked := map[int][]time.Duration{}
	unblocked := map[int][]time.Duration{}
	for range 6 {
		for _, warm := range []int{1, -1} {
			p := pools[warm]
			time.Sleep(700 * time.Millisecond)
			start := time.Now()
			renderOn(t, p, browser.Request{URL: ts.URL + "/js"}, 20*time.Second)
			spaced[warm] = append(spaced[warm], time.Since(start))
			for range 3 {
				start := time.Now()
				renderOn(t, p, browser.Request{URL: ts.URL + "/js"}, 20*time.Second)
				tight[warm] = append(tight[warm], time.Since(start))
			}
			time.Sleep(700 * time.Millisecond)
			start = time.Now()
			renderOn(t, p, browser.Request{URL: heavy.URL}, 20*time.Second)
			unblocked[warm] = append(unblocked[warm], time.Since(start))
			time.Sleep(700 * time.Millisecond)
			start = time.Now()
			renderOn(t, p, browser.Request{URL: heavy.URL, BlockResources: true}, 20*time.Second)
			blocked[warm] = append(blocked[warm], time.Since(start))
		}
	}
	for _, warm := range []int{1, -1} {
		t.Logf("warm=%d spaced: %s", warm, stats(spaced[warm]))
		t.Logf("warm=%d back-to-back: %s", warm, stats(tight[warm]))
		t.Logf("warm=%d 40 images: %s; blocked: %s", warm, stats(unblocked[warm]), stats(blocked[warm]))
	}
	var tabs []time.Duration
	for range 5 {
		d, _ := pools[-1].TimeNewTab()
		tabs = append(tabs, d)
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("newTab: %s", stats(tabs))
}
