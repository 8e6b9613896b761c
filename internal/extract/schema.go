package extract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalidSchema is wrapped by JSONSchema's errors.
var ErrInvalidSchema = errors.New("invalid extraction schema")

// maxSchemaDepth bounds the nesting of a schema description map.
const maxSchemaDepth = 8

// JSONSchema derives a JSON Schema (draft 2020-12 vocabulary) from a schema
// description map (spec.Extract.Schema): field names mapped to
// plain-language descriptions, nested objects allowed.
//
// Every object has its fields as properties (each with its description),
// all of them required, and additionalProperties false, which is what
// OpenAI-style strict structured output demands. A description's type is
// read deterministically from its words:
//
//   - "array of …", "list of …", or a plural head noun ("product names") →
//     an array. Its items are strings, unless the description names two or
//     more attributes joined by "and" ("order IDs and statuses", "products
//     with name, price and url"): then objects with those attributes
//     (singular, snake_case: id, status) as string properties.
//   - "whether …", "is …", "has …", "true if …" → boolean.
//   - "number of …", "how many", "count", "price", "amount" → number.
//   - anything else → string.
//
// A nested object of descriptions gives a nested object schema; a
// one-element array ([description or object]) gives an array of that.
func JSONSchema(schema json.RawMessage) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(schema))
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: must be a JSON object of field descriptions: %v", ErrInvalidSchema, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the object", ErrInvalidSchema)
	}
	return objectSchema("schema", m, 0)
}

func objectSchema(path string, m map[string]any, depth int) (map[string]any, error) {
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("%w: %s is nested too deeply", ErrInvalidSchema, path)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%w: %s must name at least one field", ErrInvalidSchema, path)
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	props := make(map[string]any, len(m))
	for _, name := range names {
		p, err := valueSchema(path+"."+name, name, m[name], depth)
		if err != nil {
			return nil, err
		}
		props[name] = p
	}
	return map[string]any{
		"type":                 "object",
		"properties":           props,
		"required":             names,
		"additionalProperties": false,
	}, nil
}

func valueSchema(path, name string, v any, depth int) (map[string]any, error) {
	switch x := v.(type) {
	case string:
		if strings.TrimSpace(x) == "" {
			x = strings.ReplaceAll(name, "_", " ")
		}
		return describe(x), nil
	case map[string]any:
		return objectSchema(path, x, depth+1)
	case []any:
		if len(x) != 1 {
			return nil, fmt.Errorf("%w: %s: an array must hold exactly one description of its items", ErrInvalidSchema, path)
		}
		var items map[string]any
		var err error
		if s, ok := x[0].(string); ok {
			items = scalarSchema(s)
		} else {
			items, err = valueSchema(path+"[0]", name, x[0], depth+1)
		}
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items}, nil
	default:
		return nil, fmt.Errorf("%w: %s must be a description string or an object", ErrInvalidSchema, path)
	}
}

// describe turns one plain-language description into a schema.
func describe(desc string) map[string]any {
	desc = strings.TrimSpace(desc)
	words := tokenize(desc)
	if rest, ok := arrayPrefix(words); ok {
		return arraySchema(desc, rest)
	}
	if s := scalarKind(words); s != "" {
		return map[string]any{"type": s, "description": desc}
	}
	if pluralHead(words) {
		return arraySchema(desc, words)
	}
	return map[string]any{"type": "string", "description": desc}
}

// scalarSchema is the schema of an array's items given by a description.
func scalarSchema(desc string) map[string]any {
	desc = strings.TrimSpace(desc)
	t := scalarKind(tokenize(desc))
	if t == "" {
		t = "string"
	}
	s := map[string]any{"type": t}
	if desc != "" {
		s["description"] = desc
	}
	return s
}

func arraySchema(desc string, rest []string) map[string]any {
	items := map[string]any{"type": "string"}
	if attrs := attributes(rest); len(attrs) >= 2 {
		props := make(map[string]any, len(attrs))
		names := make([]string, 0, len(attrs))
		for _, a := range attrs {
			props[a.name] = map[string]any{"type": "string", "description": a.desc}
			names = append(names, a.name)
		}
		items = map[string]any{
			"type":                 "object",
			"properties":           props,
			"required":             names,
			"additionalProperties": false,
		}
	}
	return map[string]any{"type": "array", "description": desc, "items": items}
}

// tokenize lowercases desc and splits it into words; commas, colons and
// semicolons become words of their own.
func tokenize(desc string) []string {
	var words []string
	for f := range strings.FieldsSeq(strings.ToLower(desc)) {
		for f != "" {
			i := strings.IndexAny(f, ",;:()")
			if i < 0 {
				words = append(words, f)
				break
			}
			if i > 0 {
				words = append(words, f[:i])
			}
			words = append(words, f[i:i+1])
			f = f[i+1:]
		}
	}
	return words
}

// arrayPrefix strips "array of", "list of", "a list of", "all" … and
// reports whether there was one.
func arrayPrefix(w []string) ([]string, bool) {
	if len(w) > 0 && (w[0] == "a" || w[0] == "an" || w[0] == "the") {
		w = w[1:]
	}
	if len(w) >= 2 && w[1] == "of" {
		switch w[0] {
		case "array", "arrays", "list", "lists", "collection", "set":
			return w[2:], true
		}
	}
	if len(w) >= 2 && (w[0] == "all" || w[0] == "every" || w[0] == "each") {
		if w[1] == "of" || w[1] == "the" {
			return w[2:], true
		}
		return w[1:], true
	}
	return w, false
}

// scalarKind is "boolean", "number" or "" for a description's words.
func scalarKind(w []string) string {
	if len(w) == 0 {
		return ""
	}
	switch w[0] {
	case "whether", "is", "are", "has", "have", "does", "do", "can":
		return "boolean"
	case "true":
		if len(w) > 1 && (w[1] == "if" || w[1] == "when") {
			return "boolean"
		}
	}
	for i, x := range w {
		if x == "how" && i+1 < len(w) && (w[i+1] == "many" || w[i+1] == "much") {
			return "number"
		}
	}
	head := headPhrase(w)
	if len(head) == 0 {
		return ""
	}
	switch head[len(head)-1] {
	case "count", "price", "amount", "quantity", "cost", "total":
		return "number"
	case "number":
		// "number of reviews" or "a number", not "phone number".
		if len(head) == 1 || (len(head) == 2 && isArticle(head[0])) {
			return "number"
		}
	}
	return ""
}

// headPhrase is the noun phrase a description starts with: its words up to
// the first preposition, conjunction or punctuation.
func headPhrase(w []string) []string {
	for i, x := range w {
		if headStop[x] {
			return w[:i]
		}
	}
	return w
}

func isArticle(w string) bool { return w == "a" || w == "an" || w == "the" }

// headStop ends a description's head noun phrase.
var headStop = map[string]bool{
	"of": true, "in": true, "on": true, "for": true, "from": true, "with": true,
	"that": true, "which": true, "who": true, "where": true, "to": true,
	"by": true, "at": true, "as": true, "including": true, "containing": true,
	"is": true, "are": true, "(": true, ")": true, ":": true, ";": true, ",": true,
	"and": true, "or": true,
}

// pluralHead reports whether the head noun of a description ("recent
// orders", "the product names") looks plural.
func pluralHead(w []string) bool {
	head := headPhrase(w)
	return len(head) > 0 && isPlural(head[len(head)-1])
}

// notPlural are common singular words that end in s.
var notPlural = map[string]bool{
	"news": true, "series": true, "species": true, "status": true,
	"address": true, "business": true, "process": true, "access": true,
	"bus": true, "campus": true, "virus": true, "bonus": true, "canvas": true,
	"is": true, "has": true, "was": true, "its": true, "this": true, "us": true,
	"yes": true, "plus": true, "minus": true, "analysis": true, "basis": true,
	"thesis": true, "axis": true, "gas": true, "lens": true, "always": true,
	"https": true, "http": true, "sms": true, "css": true,
}

func isPlural(w string) bool {
	w = strings.Trim(w, ".!?\"'")
	if len(w) < 3 || !strings.HasSuffix(w, "s") || notPlural[w] {
		return false
	}
	switch {
	case strings.HasSuffix(w, "ss"), strings.HasSuffix(w, "us"),
		strings.HasSuffix(w, "is"), strings.HasSuffix(w, "'s"):
		return false
	}
	return true
}

// attribute is one named attribute of an array's items.
type attribute struct{ name, desc string }

// attributes finds two or more attributes joined by "and" in an array
// description: in its head phrase ("order IDs and statuses"), or after
// "with", "including", "containing" or ":" ("products with name, price and
// url"). It returns nil when there are none.
func attributes(w []string) []attribute {
	// The head phrase, up to a preposition.
	end := len(w)
	for i, x := range w {
		if x != "and" && x != "," && headStop[x] {
			end = i
			break
		}
	}
	if attrs := splitAttributes(w[:end]); len(attrs) >= 2 {
		return attrs
	}
	for i, x := range w {
		switch x {
		case "with", "including", "containing", ":", "(":
			tail := w[i+1:]
			for j, y := range tail {
				if y != "and" && y != "," && headStop[y] {
					tail = tail[:j]
					break
				}
			}
			if attrs := splitAttributes(tail); len(attrs) >= 2 {
				return attrs
			}
		}
	}
	return nil
}

// splitAttributes splits "order ids , dates and statuses" at "and" and
// commas; it needs an "and" to call the parts attributes.
func splitAttributes(w []string) []attribute {
	if !slices.Contains(w, "and") {
		return nil
	}
	var out []attribute
	seen := map[string]bool{}
	var part []string
	flush := func() {
		if len(part) == 0 {
			return
		}
		name := identifier(singular(part[len(part)-1]))
		desc := strings.Join(part, " ")
		part = part[:0]
		if name == "" || isArticle(name) || name == "their" || name == "its" {
			return
		}
		for n, base := 2, name; seen[name]; n++ {
			name = fmt.Sprintf("%s_%d", base, n)
		}
		seen[name] = true
		out = append(out, attribute{name: name, desc: desc})
	}
	for _, x := range w {
		if x == "and" || x == "," {
			flush()
			continue
		}
		part = append(part, x)
	}
	flush()
	return out
}

// singular undoes the common English plural endings.
func singular(w string) string {
	switch {
	case !isPlural(w):
		return w
	case strings.HasSuffix(w, "ies") && len(w) > 4:
		return w[:len(w)-3] + "y"
	case strings.HasSuffix(w, "sses"), strings.HasSuffix(w, "uses"),
		strings.HasSuffix(w, "xes"), strings.HasSuffix(w, "ches"),
		strings.HasSuffix(w, "shes"), strings.HasSuffix(w, "zes"):
		return w[:len(w)-2]
	default:
		return w[:len(w)-1]
	}
}

// identifier keeps [a-z0-9_] of w, joining other runs with "_".
func identifier(w string) string {
	var b strings.Builder
	sep := false
	for _, r := range w {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			if sep && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
			sep = false
		default:
			sep = true
		}
	}
	return b.String()
}
