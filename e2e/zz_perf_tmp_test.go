package e2e

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

func TestZZPerfTmp(t *testing.T) {
	if os.Getenv("PF_PERF") == "" {
		t.Skip()
	}
	e := Start(t, Options{Workers: 1, Concurrency: 12})
	site := NewSite(t, nil)
	urls := make([]string, 6000)
	for i := range urls {
		urls[i] = site.URL + "/plain?n=" + strconv.Itoa(i)
	}
	os.WriteFile("/tmp/pf-perf-pids", []byte(fmt.Sprintf("%d %d", e.WorkerPID(0), e.api.cmd.Process.Pid)), 0o644)
	time.Sleep(3 * time.Second)
	acc, _ := e.SubmitBatch(keyA, map[string]any{"urls": urls})
	st := time.Now()
	b, _ := e.WaitBatch(keyA, acc.ID, 500*time.Millisecond, 10*time.Minute)
	t.Logf("done in %s: %+v", time.Since(st), b)
}
