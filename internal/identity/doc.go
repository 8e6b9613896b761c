// Package identity holds a tenant's identity profiles: named bundles of the
// user agent, locale, time zone, Accept-Language, viewport and extra request
// headers that a job runs with.
//
// A Profile is validated (Validate) and put in canonical form (Normalize)
// before it is stored. The Store keeps each tenant's profiles in Redis: one
// hash per profile and a sorted set of names for listing. Like every
// pagefleet key they start with the hash tag {pf} (the inner {i:…} is part
// of the name only), so every write is a single atomic step also on Redis
// Cluster:
//
//	{pf}:{i:<tenant>}:identity:<name>   hash: profile (JSON), created_at, updated_at
//	{pf}:{i:<tenant>}:identities        sorted set of names (score 0, listed by name)
//
// Profiles do not expire. The package imports neither the browser nor
// asynq, so the API binary can use it; the worker reads a job's profile once
// when the job starts and hands it to the browser (as a browser.Identity) or
// to plain fetches (RequestHeaders).
package identity
