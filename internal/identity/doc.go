// Package identity holds a tenant's identity profiles: named bundles of the
// user agent, locale, time zone, Accept-Language, viewport and extra request
// headers that a job runs with.
//
// A Profile (the wire type spec.Identity) is validated (Validate) and put
// in canonical form (Normalize) before it is stored; rdb.Identities keeps
// each tenant's profiles in Redis. Profiles do not expire. The package imports neither the browser nor
// asynq, so the API binary can use it; the worker reads a job's profile once
// when the job starts and hands it to the browser (as a browser.Identity) or
// to plain fetches (RequestHeaders).
package identity
