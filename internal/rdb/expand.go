package rdb

import (
	"context"
	"errors"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// ErrExpandRace means another run of the batch's expansion wrote the batchChunk
// first (a redelivered task running next to the original).
var ErrExpandRace = errors.New("batch expansion raced with another run")

// ExpandState is how far the expansion of a list batch got.
type ExpandState struct {
	Total     int  // URLs in the batch
	Expanded  int  // URLs that have job records
	Done      bool // the expansion finished
	Cancelled bool
}

// ExpandState reads how far the batch's expansion got.
func (s *Batches) ExpandState(ctx context.Context, id string) (*ExpandState, error) {
	pipe := s.rdb.Pipeline()
	h := pipe.HMGet(ctx, BatchKey(id), "tenant", "total", "expand_done", "cancel")
	m := pipe.Get(ctx, markKey(id))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	vals := h.Val()
	str := func(i int) string { s, _ := vals[i].(string); return s }
	if str(0) == "" {
		return nil, ErrBatchNotFound
	}
	st := &ExpandState{Done: str(2) == "1", Cancelled: str(3) == "1"}
	st.Total, _ = strconv.Atoi(str(1))
	st.Expanded, _ = strconv.Atoi(m.Val())
	return st, nil
}

// URLs returns up to n submitted URLs from index start.
func (s *Batches) URLs(ctx context.Context, id string, start, n int) ([]string, error) {
	return s.rdb.LRange(ctx, urlsKey(id), int64(start), int64(start+n-1)).Result()
}

// CreateChunk writes the job records of urls, the batch's URLs from index
// start, appends their ids to the job list and moves the expansion mark, in
// one transaction that fails with ErrExpandRace unless the mark still says
// start: each record is written once, whatever runs the expansion. The
// records were counted in total and queued when the batch was created. It
// returns the ids and whether the batch was cancelled when they were written
// (then the caller cancels them instead of enqueueing them). In a crawl,
// which visits each URL once, the URLs are also claimed in the seen hash,
// at depth 0.
func (s *Batches) CreateChunk(ctx context.Context, b *Batch, start int, urls []string) ([]string, bool, error) {
	ids := make([]string, len(urls))
	args := make([]any, len(urls))
	for i := range urls {
		ids[i] = BatchJobID(b.ID, start+i)
		args[i] = ids[i]
	}
	var cancel *redis.StringCmd
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		mark, err := tx.Get(ctx, markKey(b.ID)).Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if mark != start {
			return ErrExpandRace
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for i, u := range urls {
				s.jobs.Create(ctx, p, JobRecord{ID: ids[i], Tenant: b.Tenant, Kind: spec.KindFetch, URL: u,
					CreatedAt: b.CreatedAt, BatchID: b.ID, Counted: true, ListOrder: start + i})
				if b.Crawl != nil {
					p.HSet(ctx, seenKey(b.ID), u, ids[i])
					p.HSet(ctx, JobKey(ids[i]), "depth", 0, "disc_by", spec.DiscoveredStart)
				}
			}
			if b.Crawl != nil {
				p.PExpire(ctx, seenKey(b.ID), s.ttl)
			}
			s.jobs.TrimIndex(ctx, p, b.Tenant)
			p.RPush(ctx, jobsKey(b.ID), args...)
			p.PExpire(ctx, jobsKey(b.ID), s.ttl)
			p.Set(ctx, markKey(b.ID), start+len(urls), s.ttl)
			cancel = p.HGet(ctx, BatchKey(b.ID), "cancel")
			return nil
		})
		return err
	}, markKey(b.ID))
	if errors.Is(err, redis.TxFailedErr) {
		return nil, false, ErrExpandRace
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, err
	}
	return ids, cancel.Val() == "1", nil
}

var finishExpandScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], 'expand_done', '1') == 1 then
  redis.call('HINCRBY', KEYS[1], 'open', -1)
end
redis.call('DEL', KEYS[2])
return 1
`)

// FinishExpand closes the expansion's open step (once) and drops the URL
// list, which the job records now hold.
func (s *Batches) FinishExpand(ctx context.Context, id string) error {
	return finishExpandScript.Run(ctx, s.rdb, []string{BatchKey(id), urlsKey(id)}).Err()
}
