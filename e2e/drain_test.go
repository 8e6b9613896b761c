package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/pagefleet/pagefleet/jobs"
)

// drainQueues are pagefleet's asynq queues in the order Drain reads them.
// A task may enqueue another while it is active, and only into its own
// queue or a later one: a fetch or interact task enqueues its job's events
// into webhooks, a batch expansion and a crawl page enqueue pages into bulk,
// a batch page enqueues batch events into webhooks; a delivery enqueues
// nothing. Reading the producers first, a task they enqueued before they
// finished cannot slip between two reads unseen.
var drainQueues = []string{jobs.QueueInteractive, jobs.QueueBulk, jobs.QueueWebhooks}

// Drain waits for the point after which nothing more can arrive without a
// new request, and fails the test if it does not come within timeout:
//
//   - none of pagefleet's asynq queues holds a task that is pending,
//     active, scheduled, in retry (a webhook delivery waiting for its next
//     attempt is work still to do) or aggregating;
//   - the job queues hold no archived task: the sweep turns one into its
//     job's outcome and events, and deletes it only after that;
//   - each of logs (a webhook receiver's attempts, a site's hits) returned
//     the same count at two such observations in a row.
//
// A job enqueues its events while its task is still active, so once the
// queues are empty every delivery that any task will make has been made,
// and a test that counts deliveries (or fetches) after Drain sees a
// duplicate that a retry, a redelivered task or a second sweep would send.
// What drains only through a retry scheduled later (a job's next attempt
// 5 s away) makes Drain wait that long: give a timeout that covers it.
func (e *Env) Drain(t testing.TB, timeout time.Duration, logs ...func() int) {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(e.Redis.Client(t, e.DB))
	start := time.Now()
	var last []int // the logs' counts at the last drained observation; nil: none yet
	for {
		busy, err := pendingWork(insp)
		if err == nil && busy == "" {
			counts := make([]int, len(logs))
			for i, l := range logs {
				counts[i] = l()
			}
			if last != nil && slices.Equal(last, counts) {
				t.Logf("drained %s after the call", time.Since(start).Round(10*time.Millisecond))
				return
			}
			last = counts
		} else {
			last = nil
		}
		if time.Since(start) > timeout {
			if err != nil {
				busy = err.Error()
			} else if busy == "" {
				busy = "the logs kept changing"
			}
			t.Fatalf("pagefleet not drained after %s: %s", timeout, busy)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pendingWork describes the work asynq still holds in pagefleet's queues
// ("" for none).
func pendingWork(insp *asynq.Inspector) (string, error) {
	known, err := insp.Queues()
	if err != nil {
		return "", fmt.Errorf("list queues: %w", err)
	}
	var busy []string
	for _, q := range drainQueues {
		if !slices.Contains(known, q) {
			continue // no task was ever enqueued there
		}
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			return "", fmt.Errorf("queue %s: %w", q, err)
		}
		n := info.Pending + info.Active + info.Scheduled + info.Retry + info.Aggregating
		if q != jobs.QueueWebhooks {
			n += info.Archived // an archived delivery is final; an archived job task is the sweep's to end
		}
		if n > 0 {
			busy = append(busy, fmt.Sprintf("%s: %d pending, %d active, %d scheduled, %d retry, %d aggregating, %d archived",
				q, info.Pending, info.Active, info.Scheduled, info.Retry, info.Aggregating, info.Archived))
		}
	}
	return strings.Join(busy, "; "), nil
}
