package fresh

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// MaxDiffBytes bounds result.change.diff; a longer diff is cut at a line
// and ends with DiffTruncated.
const MaxDiffBytes = 64 << 10

// DiffTruncated ends a diff cut at MaxDiffBytes.
const DiffTruncated = "\\ diff truncated\n"

// Tracked is the last tracked result of a tenant, URL and tag, as the
// tracker returns it. Markdown is the tracked result's markdown;
// HasMarkdown is false when it is not kept (larger than the tracker keeps,
// or the tracker returned the result before the last one: see
// rdb.Tracker.Swap).
type Tracked = rdb.Tracked

// Digest is the digest the tracker compares results by.
func Digest(markdown string) string {
	h := sha256.Sum256([]byte(markdown))
	return hex.EncodeToString(h[:16])
}

// Compare is result.change for a result whose markdown is md, of job, given
// prev, the last tracked result (nil: none).
func Compare(prev *Tracked, job, md string) *spec.Change {
	if prev == nil || prev.Job == "" {
		return &spec.Change{Status: spec.ChangeNew}
	}
	c := &spec.Change{Status: spec.ChangeSame, PreviousJob: prev.Job}
	if !prev.At.IsZero() {
		at := prev.At.UTC()
		c.PreviousAt = &at
	}
	if prev.Digest == Digest(md) {
		return c
	}
	c.Status = spec.ChangeChanged
	if prev.HasMarkdown {
		c.Diff = Diff(prev.Markdown, md, prev.Job, job)
	}
	return c
}

// Diff is the unified diff (3 lines of context, as GNU diff -u) of a to b,
// named a/<from> and b/<to>, at most MaxDiffBytes.
func Diff(a, b, from, to string) string {
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{A: lines(a), B: lines(b),
		FromFile: "a/" + from, ToFile: "b/" + to, Context: 3})
	if err != nil {
		return ""
	}
	if len(d) > MaxDiffBytes {
		cut := strings.LastIndexByte(d[:MaxDiffBytes], '\n') + 1
		d = d[:cut] + DiffTruncated
	}
	return d
}

// lines splits s into lines that keep their "\n"; a last line without one
// gets one (difflib has no "\ No newline at end of file").
func lines(s string) []string {
	if s == "" {
		return nil
	}
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return strings.SplitAfter(s, "\n")[:strings.Count(s, "\n")]
}
