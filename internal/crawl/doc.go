// Package crawl holds the rules a crawl applies to the links it discovers
// and the follower that applies them on the worker: URL normalisation, the
// depth, same-origin and include/exclude filter, and robots.txt (read once
// per batch and origin, by whichever worker gets there first).
package crawl
