// Package session keeps the persistent browser state of pagefleet sessions in
// Redis and makes the jobs of one session run one at a time, in the order the
// API accepted them, on any number of workers.
//
// # The line, the lease and the fence
//
// Every session has a line: a Redis list of job ids. The API appends a job to
// its session's line ([Store.Append]) before it enqueues the task, so a job's
// place in the line is its order. A worker runs a session job only after
// [Store.Acquire] succeeded, which needs the job at the head of the line and
// the session's lock free; it then holds a [Lease] (a random token in the lock
// key, with an expiry) and a fence (a number that grows with every
// acquisition). Otherwise Acquire returns [ErrBusy] at once and the worker
// hands the task back to the queue with a short delay, so no worker slot waits
// for a session.
//
// While the job runs, [Store.Hold] renews the lease every third of its length
// and cancels the job's context if the lease is lost. State writes
// ([Store.Save], [Store.Touch]) compare the writer's fence with the session's
// current one and refuse a stale writer with [ErrStaleFence], so a holder
// that was presumed dead can no longer overwrite what its successor wrote.
// [Store.Release] takes a finished job out of the line, frees the lock and
// names the next job, which the caller can wake at once; [Store.Unlock] frees
// the lock of a job that will be retried and keeps its place at the head.
//
// A head whose job is finished or gone is popped by whoever meets it in
// Acquire (the self-healing head), and every terminal path (cancel, delete,
// permanent failure, archive) takes its own entry out with [Store.Remove].
//
// # Redis
//
// The keys and scripts are package rdb's (rdb.Sessions): this package is
// the policy on top of them — whose turn it is, renewing and losing a
// lease, encoding and sealing state.
//
// # Encoding
//
// State is stored as the JSON of the normalized state, gzip-compressed when
// it is larger than 1 KiB, then sealed with AES-256-GCM when a key is
// configured (random 12-byte nonce, the session's identity as additional
// data, so a blob cannot be moved to another session). A one-byte header
// names the format.
package session
