// Package artifact keeps the files jobs produce — screenshots, PDFs,
// downloads, a failed page's DOM and HAR — out of Redis, in an artifact
// store: a directory (file:///dir) or an S3-compatible bucket
// (s3://bucket/prefix?endpoint=…), chosen by PAGEFLEET_ARTIFACTS_URL.
//
// A worker stores a file with Store.Put(ctx, jobID, name, contentType,
// data) and puts the spec.Artifact it gets back into the job's result; no
// bytes go to Redis. The artifact's id is "<job id>~<name>", its URL a link
// to the API (GET /v1/artifacts/{id}) signed with HMAC-SHA256 under the
// operator's secret until the artifact expires, so that it needs no API
// key (see Signer). Every artifact expires with its job: Put records the
// job in an Index (Redis, internal/rdb) and a Reaper deletes the job's
// artifacts once the job's retention has passed.
//
// Layout in the store: "<prefix><job id>/<name>" holds the bytes and
// "<prefix><job id>/.<name>.json" (file backend) or the object's own
// metadata (S3) its content type and checksum, so DeleteJob removes one
// prefix.
package artifact
