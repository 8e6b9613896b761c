package extract

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/andybalholm/cascadia"
	"golang.org/x/net/html"

	"github.com/pagefleet/pagefleet/internal/convert"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// ScopeSelector, as a selector, names the element the selector is evaluated
// relative to (the match of the enclosing "fields" selector) instead of a
// descendant of it. Useful to read an attribute of each match itself.
const ScopeSelector = ":scope"

// urlAttrs are the attributes whose values are resolved to absolute URLs.
var urlAttrs = map[string]bool{
	"href": true, "src": true, "action": true, "formaction": true,
	"poster": true, "cite": true, "data-src": true, "data-href": true,
}

// Selectors evaluates a selectors map (spec.Extract.Selectors) against doc.
//
// Each field maps to a CSS selector string (the trimmed, whitespace-collapsed
// text of the first match, or null when nothing matches), to an object
// {"selector", "attr", "all", "fields"}, or to a nested map of the same,
// which yields a nested object.
//
// In the object form, "attr" returns that attribute instead of the text
// (href, src and other URL attributes resolved to absolute URLs; null when
// the element lacks it); "all": true returns an array with one entry per
// match (empty when nothing matches); "fields" evaluates a nested map
// relative to each match, giving an object per match (and takes precedence
// over "attr"). Selectors inside "fields" match descendants of the match;
// ":scope" names the match itself.
//
// An invalid selector map or CSS selector is a *spec.Error with code
// extraction_failed, not retryable.
func Selectors(doc *convert.Document, selectors json.RawMessage) (map[string]any, error) {
	var raw map[string]any
	if err := json.Unmarshal(selectors, &raw); err != nil {
		return nil, spec.Errorf(spec.CodeExtractionFailed, false, "selectors must be a JSON object: %v", err)
	}
	if len(raw) == 0 {
		return nil, spec.Errorf(spec.CodeExtractionFailed, false, "selectors must not be empty")
	}
	plan, err := compileFields("selectors", raw, 0)
	if err != nil {
		return nil, spec.Errorf(spec.CodeExtractionFailed, false, "%v", err)
	}
	return evalFields(doc, plan, doc.Root()), nil
}

// maxSelectorDepth bounds the nesting of selector maps.
const maxSelectorDepth = 16

// field is one compiled entry of a selectors map.
type field struct {
	name   string
	sel    cascadia.Matcher // nil: a nested plain map, or ":scope"
	self   bool             // ":scope"
	attr   string
	all    bool
	fields []field // object per match (or the nested plain map)
}

func compileFields(path string, m map[string]any, depth int) ([]field, error) {
	if depth > maxSelectorDepth {
		return nil, fmt.Errorf("%s: nested too deeply", path)
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names) // deterministic: the same error for the same map
	out := make([]field, 0, len(m))
	for _, name := range names {
		p := path + "." + name
		f := field{name: name}
		switch v := m[name].(type) {
		case string:
			if err := f.compileSelector(p, v); err != nil {
				return nil, err
			}
		case map[string]any:
			s, ok := v["selector"]
			if !ok {
				sub, err := compileFields(p, v, depth+1)
				if err != nil {
					return nil, err
				}
				f.fields = sub
				out = append(out, f)
				continue
			}
			str, ok := s.(string)
			if !ok {
				return nil, fmt.Errorf("%s.selector: must be a string", p)
			}
			if err := f.compileSelector(p+".selector", str); err != nil {
				return nil, err
			}
			if a, ok := v["attr"]; ok && a != nil {
				as, ok := a.(string)
				if !ok {
					return nil, fmt.Errorf("%s.attr: must be a string", p)
				}
				f.attr = strings.ToLower(strings.TrimSpace(as))
			}
			if a, ok := v["all"]; ok && a != nil {
				ab, ok := a.(bool)
				if !ok {
					return nil, fmt.Errorf("%s.all: must be a boolean", p)
				}
				f.all = ab
			}
			if fs, ok := v["fields"]; ok && fs != nil {
				fm, ok := fs.(map[string]any)
				if !ok || len(fm) == 0 {
					return nil, fmt.Errorf("%s.fields: must be a non-empty object", p)
				}
				sub, err := compileFields(p+".fields", fm, depth+1)
				if err != nil {
					return nil, err
				}
				f.fields = sub
			}
		default:
			return nil, fmt.Errorf("%s: must be a CSS selector or an object", p)
		}
		out = append(out, f)
	}
	return out, nil
}

func (f *field) compileSelector(path, s string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return fmt.Errorf("%s: must be a CSS selector", path)
	}
	if s == ScopeSelector {
		f.self = true
		return nil
	}
	sel, err := cascadia.ParseGroup(s)
	if err != nil {
		return fmt.Errorf("%s: invalid CSS selector %q: %v", path, s, err)
	}
	f.sel = sel
	return nil
}

// evalFields evaluates fields relative to ctx.
func evalFields(doc *convert.Document, fields []field, ctx *html.Node) map[string]any {
	out := make(map[string]any, len(fields))
	for i := range fields {
		out[fields[i].name] = fields[i].eval(doc, ctx)
	}
	return out
}

func (f *field) eval(doc *convert.Document, ctx *html.Node) any {
	if f.sel == nil && !f.self {
		return evalFields(doc, f.fields, ctx) // nested plain map
	}
	if f.all {
		var matches []*html.Node
		if f.self {
			matches = []*html.Node{ctx}
		} else {
			matches = cascadia.QueryAll(ctx, f.sel)
		}
		vals := make([]any, 0, len(matches))
		for _, n := range matches {
			vals = append(vals, f.value(doc, n))
		}
		return vals
	}
	n := ctx
	if !f.self {
		n = cascadia.Query(ctx, f.sel)
	}
	if n == nil {
		return nil
	}
	return f.value(doc, n)
}

// value is what one match yields: an object, an attribute or its text.
func (f *field) value(doc *convert.Document, n *html.Node) any {
	switch {
	case f.fields != nil:
		return evalFields(doc, f.fields, n)
	case f.attr != "":
		for _, a := range n.Attr {
			if a.Namespace == "" && a.Key == f.attr {
				if urlAttrs[f.attr] {
					return doc.ResolveReference(a.Val)
				}
				return strings.TrimSpace(a.Val)
			}
		}
		return nil
	default:
		return convert.NodeText(n)
	}
}
