// Package batch keeps batches in Redis: bulk lists of URLs and crawls that
// fan out into fetch jobs on the bulk queue.
//
// A batch is one hash ({pf}:batch:{id}) with its settings and its counters —
// total, queued, running, succeeded, failed, cancelled — plus open, the
// number of steps still able to add jobs (the expansion of a URL list, the
// link discovery of a crawl page). The counters only move inside Lua
// scripts: the job scripts of internal/jobstore move a job from one status
// bucket to another in the same step that changes the job, and the scripts
// here create jobs with total and queued raised together, so that the
// counts add up to total whenever they are read. The batch completes exactly
// once, in a script, when nothing is queued or running and nothing is open.
//
// Keys of a batch (all expire with the results):
//
//	{pf}:batch:{id}            hash: settings and counters
//	{pf}:batch:{id}:urls       list: the submitted URLs (until expanded)
//	{pf}:batch:{id}:expanded   string: how many URLs have job records
//	{pf}:batch:{id}:jobs       list: job ids in order (the index is the cursor)
//	{pf}:batch:{id}:seen       hash: normalised URL → job id (crawls)
//	{pf}:batch:{id}:robots     hash: origin → robots.txt rules (crawls)
//	{pf}:t:{tenant}:batches    sorted set: the tenant's batches by creation
//	{pf}:t:{tenant}:bulk       sorted set: the tenant's running bulk jobs,
//	                         scored by lease expiry (the fairness cap)
//
// The package also holds the crawl rules: URL normalisation, the
// include/exclude/same-origin filter and a small robots.txt parser.
package batch
