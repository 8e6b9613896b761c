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

func med(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2].Round(time.Millisecond)
}

func TestDebug(t *testing.T) {
	big := make([]byte, 300<<10)
	var imgs strings.Builder
	for i := range 20 { fmt.Fprintf(&imgs, `<img src="/img/%d.jpg" width=10 height=10>`, i) }
	heavy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/img/") { time.Sleep(100 * time.Millisecond); w.Header().Set("Content-Type", "image/jpeg"); w.Write(big); return }
		fmt.Fprintf(w, "<!doctype html><html><body>%s</body></html>", imgs.String())
	}))
	defer heavy.Close()
	p, _ := browser.New(browser.Config{})
	p.Start(context.Background())
	defer p.Stop(context.Background())
	res := map[string][]time.Duration{}
	for range 6 {
		for _, c := range []struct{ name, url string; block bool }{{"trivial", ts.URL + "/js", false}, {"trivial+block", ts.URL + "/js", true}, {"20x300KB", heavy.URL, false}, {"20x300KB+block", heavy.URL, true}} {
			time.Sleep(800 * time.Millisecond)
			start := time.Now()
			if _, err := renderOn(t, p, browser.Request{URL: c.url, BlockResources: c.block}, 30*time.Second); err != nil { t.Fatal(err) }
			res[c.name] = append(res[c.name], time.Since(start))
		}
	}
	for _, k := range []string{"trivial", "trivial+block", "20x300KB", "20x300KB+block"} { t.Logf("%s: median %v", k, med(res[k])) }
}
