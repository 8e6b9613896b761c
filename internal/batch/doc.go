// Package batch checks batch requests — a list of URLs, or a crawl with its
// include/exclude/same-origin rules — and holds the crawl rules the worker
// applies to discovered links: URL normalisation, the link filter and a
// small robots.txt parser. The batch itself (its hash, counters, job list
// and slots) is stored by package rdb.
package batch
