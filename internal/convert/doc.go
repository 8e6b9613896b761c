// Package convert turns a page's HTML into the outputs a job may ask for:
// Markdown of the main content, readable text, absolute links and metadata.
//
// The HTML is parsed once by Parse; every output is derived from that one
// tree. A Document is never modified after Parse, so its methods may be called
// from several goroutines at once.
package convert
