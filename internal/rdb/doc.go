// Package rdb is pagefleet's storage layer: it owns every Redis key and
// every Lua script, behind domain operations — create a job, start it,
// finish it, hand it back, cancel it; create, expand, settle a batch; take
// and release a session's turn; save its state under a fence. No other
// package spells a key or runs a script (asynq's own keys are asynq's).
//
// One file per domain: jobs.go (job records, admission, the running-jobs
// limit, notifications), batches.go, expand.go, crawl.go and bulkslots.go
// (batches), sessions.go and sessions_scripts.go (the session line, lease,
// fence and state), identities.go, deliveries.go, idempotency.go and
// migrate.go, workers.go (liveness and claims), hosts.go (the per-host
// politeness gate), proxies.go (upstream proxy health and rotation), and
// for freshness cache.go (the result cache, jobs served from it),
// changes.go (tracked results, a tracked batch's changes) and
// schedules.go; artifacts.go (which jobs' artifacts go when). Stores
// bundles them for a binary.
//
// # Keys
//
// Every key starts with the hash tag {pf}, so that on Redis Cluster the
// scripts that touch a job, its tenant's counters, its batch and its
// session line at once find them in one slot (a cluster gives pagefleet
// failover, not sharding). Inner braces ({s:…}, {i:…}) are part of the
// name only. In a tenant or session id, '%', '{', '}' (and ':' in a
// tenant of a session or identity key) are percent-escaped.
//
//	key                                   type    what                                       expires
//	{pf}:job:<id>                         hash    a job record: status, times, attempts,     result TTL
//	                                              url, result (gzip), error, session_id,
//	                                              batch_id, webhook, counted, task, owner,
//	                                              depth, parent, disc (crawl discovery),
//	                                              schedule_id, scheduled_at, rx (the
//	                                              result's own fields: EncodeResult)
//	{pf}:t:<tenant>:jobs                  zset    the tenant's jobs by creation (µs)         result TTL
//	{pf}:t:<tenant>:active                string  jobs not ended (the queued_jobs limit)     never
//	{pf}:t:<tenant>:rps:<unix second>     string  creations in that second                   2 s
//	{pf}:t:<tenant>:running               zset    running job ids by lease end (ms)          2 leases
//	{pf}:t:<tenant>:idem:<sha256/16>      string  the object an Idempotency-Key created      24 h
//	{pf}:batch:<id>                       hash    a batch: settings and counters,            result TTL
//	                                              schedule_id, scheduled_at, track (its
//	                                              scope's last-run key), chg_new, chg_same,
//	                                              chg_changed, chg_removed, chg_removed_urls
//	{pf}:batch:<id>:urls                  list    submitted URLs, until expanded             result TTL
//	{pf}:batch:<id>:expanded              string  URLs that have job records                 result TTL
//	{pf}:batch:<id>:jobs                  list    job ids in order                           result TTL
//	{pf}:batch:<id>:seen                  hash    normalised URL → job id (crawls)           result TTL
//	{pf}:batch:<id>:robots                hash    origin → robots.txt outcome (crawls)       result TTL
//	{pf}:batch:<id>:robots:lock:<fnv32>   string  who fetches an origin's robots.txt         30 s
//	{pf}:batch:<id>:tracked               set     normalised URLs a tracked batch's run saw  result TTL
//	{pf}:t:<tenant>:batches               zset    the tenant's batches by creation (µs)      result TTL
//	{pf}:t:<tenant>:bulk                  zset    running batch jobs by lease end (ms)       4 leases
//	{pf}:{s:<tenant>:<sid>}:line          list    the session's job ids, head first          line TTL
//	{pf}:{s:<tenant>:<sid>}:lock          string  the lease holder's token                   lease
//	{pf}:{s:<tenant>:<sid>}:fence         string  fencing counter                            line TTL
//	{pf}:{s:<tenant>:<sid>}:state         string  encoded (maybe sealed) browser state       session TTL
//	{pf}:{s:<tenant>:<sid>}:meta          hash    created, used, expires, version, cookies,  session TTL
//	                                              origins, bytes, digest
//	{pf}:{s:<tenant>:<sid>}:deleted       string  the fence a deletion moved to              line TTL
//	{pf}:t:<tenant>:sessions              zset    session ids by last use (ms)               session TTL
//	{pf}:{i:<tenant>}:identity:<name>     hash    an identity profile (JSON), times          never
//	{pf}:{i:<tenant>}:identities          zset    the tenant's profile names (lex order)     never
//	{pf}:deliveries:<owner>               list    webhook attempts of a job or batch         result TTL
//	{pf}:delivered:<webhook id>           string  the event was delivered or given up        26 h
//	{pf}:w:<worker>                       string  a worker's heartbeat                       5 s
//	{pf}:w:<worker>:claims                hash    the tasks a worker runs (jobs.Claim)       none
//	{pf}:workers                          zset    worker ids by last heartbeat (ms)          never
//	{pf}:sweep:<task id>                  string  reruns of an archived batch expansion       48 h
//	{pf}:t:<tenant>:cache:<key>           hash    a cached result's core (gzip), head     cache TTL
//	                                              (status, headers, links), job, at, etag,
//	                                              lm, md (fresh.Key is <key>)
//	{pf}:t:<tenant>:cache                 zset    the tenant's cache keys by time (ms): the  cache TTL
//	                                              cap on entries evicts the oldest
//	{pf}:t:<tenant>:chg:<sha256/16>       hash    the last tracked result of a URL and tag:  30 days
//	                                              job, at, dig, md (gzip), hasmd, and the
//	                                              one before: pjob, pat, pdig
//	{pf}:t:<tenant>:chg                   zset    the tenant's tracked lines by time (ms)    30 days
//	{pf}:t:<tenant>:chgrun:<sha256/16>    set     URLs the last completed run of a           30 days
//	                                              schedule (or tag) saw
//	{pf}:sched:<id>                       hash    a schedule: tenant, cron, tz, kind, body,  never
//	                                              webhook, paused, next (ms), last_run,
//	                                              times, version
//	{pf}:sched:<id>:runs                  zset    its recorded runs by due time (ms)         never (1000 kept)
//	{pf}:sched:<id>:run                   hash    due time (ms) → run JSON                   never
//	{pf}:t:<tenant>:schedules             zset    the tenant's schedules by creation (µs)    never
//	{pf}:schedules:due                    zset    schedule ids by next due time (ms)         never
//	{pf}:schedules:pending                zset    "<id>|<due ms>" claimed runs by the end    never
//	                                              of their claim's lease (ms)
//	{pf}:artifacts                        zset    job ids by when their artifacts go (ms)    never
//	{pf}:artifacts:secret                 string  the artifact links' signing secret         never
//	                                              (when PAGEFLEET_ARTIFACTS_SECRET is unset)
//	{pf}:migrated:prefix                  string  the pf:* → {pf}:* rename ran               never
//	{pf}:h:<tenant>|<host>:run            zset    running jobs on a host by lease end (ms)   1 h idle
//	{pf}:h:<tenant>|<host>:wait           zset    waiting tasks by first arrival (ms)        1 h idle
//	{pf}:h:<tenant>|<host>:seen           hash    waiting task → last ask (ms)               1 h idle
//	{pf}:h:<tenant>|<host>:st             hash    next start, pause, back-off level          1 h idle
//	                                              (tenant "" : the whole fleet's)
//	{pf}:px:<proxy key>                   hash    an upstream proxy's health: fails, window, 5 min + 1 h
//	                                              aside (until), streak, trial (until)
//	{pf}:px:<proxy key>:host:<host>       string  the host blocked the proxy lately          10 min
//	{pf}:pxr:<tenant>|<pool>:rr           string  a pool's round-robin counter               1 day
//	{pf}:pxr:<tenant>|<pool>:used         hash    place → jobs sent (least_used)             1 h idle
//
// Channels: {pf}:events (a job ended: its key), {pf}:cancel (a running job
// was cancelled: its id).
//
// # Scripts
//
// Each script changes one thing atomically; the counters of a batch move
// in the same script that changes the status of one of its jobs, so that
// they always add up to its total.
//
//	script              file                what
//	gateScript          jobs.go             admit n jobs: rate and queued-jobs limits
//	createGatedScript   jobs.go             admit one job, write its record, join its session line
//	                                        (only new: a derived id's record written once)
//	discardScript       jobs.go             take back a job whose task was not enqueued
//	startScript         jobs.go             start an attempt (a cancelled batch's job is cancelled),
//	                                        take a running_jobs place, record the owner and claim;
//	                                        refuse while a live owner runs it, take over a dead one's
//	renewRunningScript  jobs.go             renew a running_jobs place
//	requeueScript       jobs.go             hand a running job back to queued (its owner only)
//	finishScript        jobs.go             write an outcome once (its owner only), leave the
//	                                        running set, end the claim; a tracked batch's job
//	                                        counts its change and URL (batchTrackLua)
//	cancelJobScript     jobs.go             cancel a queued or running job
//	cancelQueuedScript  jobs_many.go        cancel those of a list of jobs still queued
//	cancelBatchScript   batches.go          mark a batch cancelled
//	settleScript        batches.go          complete a batch exactly once; a tracked one's
//	                                        removed URLs (settleTrackLua, changes.go)
//	releaseSettleScript batches.go          give a bulk slot back and settle, in one step
//	discoverScript      crawl.go            add a crawl page's links as jobs, each URL once
//	discoveryDoneScript crawl.go            close a page's link discovery
//	finishExpandScript  expand.go           close a list batch's expansion
//	acquireSlotScript   bulkslots.go        take a bulk slot (running_bulk_jobs); a dead owner's is taken
//	renewSlotScript     bulkslots.go        renew a bulk slot
//	acquireScript       sessions_scripts.go a session's turn: head of line, lock (a dead holder's is taken), fence
//	popHeadScript       sessions_scripts.go pop a finished head
//	renewScript         sessions_scripts.go renew the lock
//	unlockScript        sessions_scripts.go free the lock (keep the place)
//	releaseScript       sessions_scripts.go leave the line, free the lock, name the next
//	removeScript        sessions_scripts.go leave the line without a lease
//	saveScript          sessions_scripts.go write state under the fence
//	touchScript         sessions_scripts.go restart the expiry under the fence
//	deleteScript        sessions_scripts.go delete a session, move the fence on
//	unindexScript       sessions_scripts.go drop stale session index entries
//	setProxyScript      sessions_scripts.go record a session's proxy and its moves, under the fence
//	acquireHostScript   hosts.go            take a place on a host, or a place in its wait line
//	renewHostScript     hosts.go            renew a place on a host
//	releaseHostScript   hosts.go            give a place back, name the first waiter
//	pauseHostScript     hosts.go            pause a host, one back-off step more
//	goodHostScript      hosts.go            one back-off step back
//	pickScript          proxies.go          pick a pool's proxy: rotation, set-aside, host blocks, trials
//	failScript          proxies.go          count a proxy failure; set it aside
//	okScript            proxies.go          a proxy carried a try: a test passed
//	putIdentityScript   identities.go       create or replace a profile under the limit
//	reapWorkerScript    workers.go          take a dead worker's claims, exactly once
//	cachePutScript      cache.go            keep a result unless a newer one is there; evict
//	                                        past the tenant's cap
//	cacheTouchScript    cache.go            a revalidated entry counts as produced now
//	createEndedScript   cache.go            admit (rps) and write a job served from the cache
//	swapScript          changes.go          make a result the last tracked one, return the one
//	                                        it replaces
//	createScheduleScript schedules.go       create a schedule under the tenant's limit
//	updateScheduleScript schedules.go       change cron, time zone, paused, next (versioned)
//	deleteScheduleScript schedules.go       delete a schedule, its runs and pending claims
//	claimScript         schedules.go        claim a due time: the next due time moves on only
//	                                        from the one claimed; the run is pending
//	reletScript         schedules.go        take over a pending run whose claim lapsed
//	completeScript      schedules.go        record a run, end its pending state
//	leaveScript         workers.go          forget a worker that stops
//
// Fencing against dead workers: an owner token is "<worker id>/<nonce>";
// the job and session scripts (ownerAliveLua) read the worker id from it
// and treat a holder whose {pf}:w:<worker> heartbeat is gone as dead: its
// job or session lease is taken over, and its later writes are refused.
package rdb
