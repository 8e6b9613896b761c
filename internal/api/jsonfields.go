package api

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// decodeFields decodes the JSON object body into v, which points to a
// struct, without stopping at the first bad field as encoding/json does:
// every key v's type does not know and every value of the wrong type is
// returned as a FieldError with its JSON path (prefix, then for example
// actions[2].selector), and v holds the rest of the body. ok is false when
// the body is not a JSON object at all; the caller then reports that.
func decodeFields(body []byte, v any, prefix string) (errs []spec.FieldError, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, false
	}
	if _, isObject := tree.(map[string]any); !isObject {
		return nil, false
	}
	var c fieldChecker
	clean := c.check(prefix, tree, reflect.TypeOf(v).Elem())
	data, err := json.Marshal(clean)
	if err != nil {
		return nil, false
	}
	reflect.ValueOf(v).Elem().SetZero() // forget what the first, failed decoding set
	strict := json.NewDecoder(bytes.NewReader(data))
	strict.DisallowUnknownFields()
	if err := strict.Decode(v); err != nil {
		// The check missed something encoding/json refuses: name the
		// whole body rather than nothing.
		c.add(strings.TrimSuffix(prefix, "."), err.Error())
	}
	return c.errs, true
}

// maxFieldErrors bounds the field errors one answer lists: a hostile body
// of a million bad values costs a walk until the hundredth, not a million
// errors.
const maxFieldErrors = 100

// fieldChecker walks a decoded JSON value beside the Go type it should fill.
type fieldChecker struct {
	errs []spec.FieldError
}

func (c *fieldChecker) add(path, msg string) {
	if path == "" {
		path = "body"
	}
	if len(c.errs) < maxFieldErrors {
		c.errs = append(c.errs, spec.FieldError{Field: path, Message: msg})
	}
}

// full reports whether the checker has as many errors as an answer lists.
func (c *fieldChecker) full() bool { return len(c.errs) >= maxFieldErrors }

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// check reports what in v does not fit t, at path, and returns v without
// it: a bad key is dropped, a bad array element becomes null (so that the
// indexes of the others stay as the client sent them).
func (c *fieldChecker) check(path string, v any, t reflect.Type) any {
	if v == nil || c.full() {
		return nil // null fits anything, as in encoding/json
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		if t == reflect.TypeFor[json.RawMessage]() {
			return v
		}
		data, _ := json.Marshal(v)
		target := reflect.New(t)
		if err := json.Unmarshal(data, target.Interface()); err != nil {
			c.add(path, err.Error())
			return nil
		}
		return v
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Interface:
		return v
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			c.add(path, "must be an object, not "+jsonValueKind(v))
			return nil
		}
		fields := structFields(t)
		out := make(map[string]any, len(obj))
		for _, key := range slices.Sorted(maps.Keys(obj)) {
			val := obj[key]
			name, f, ok := key, fields[key], false
			if _, ok = fields[key]; !ok {
				// encoding/json matches names regardless of case; the
				// error names the field as documented.
				for n, ff := range fields {
					if strings.EqualFold(n, key) {
						name, f, ok = n, ff, true
						break
					}
				}
			}
			if !ok {
				c.add(join(path, key), "is not a known field")
				continue
			}
			if clean := c.check(join(path, name), val, f.Type); clean != nil || val == nil {
				out[key] = clean
			}
		}
		return out
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			c.add(path, "must be an object, not "+jsonValueKind(v))
			return nil
		}
		out := make(map[string]any, len(obj))
		for _, key := range slices.Sorted(maps.Keys(obj)) {
			val := obj[key]
			if clean := c.check(join(path, key), val, t.Elem()); clean != nil || val == nil {
				out[key] = clean
			}
		}
		return out
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			c.add(path, "must be an array, not "+jsonValueKind(v))
			return nil
		}
		out := make([]any, 0, len(arr))
		for i, el := range arr {
			if c.full() {
				break // the rest is not looked at, nor decoded
			}
			out = append(out, c.check(path+"["+strconv.Itoa(i)+"]", el, t.Elem()))
		}
		return out
	case reflect.String:
		if _, ok := v.(string); !ok {
			c.add(path, "must be a string, not "+jsonValueKind(v))
			return nil
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			c.add(path, "must be a boolean, not "+jsonValueKind(v))
			return nil
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			c.add(path, "must be a number, not "+jsonValueKind(v))
			return nil
		}
		if msg := numberFits(n, t); msg != "" {
			c.add(path, msg)
			return nil
		}
	}
	return v
}

// numberFits says what is wrong with n as a value of the numeric type t
// ("" when it fits).
func numberFits(n json.Number, t reflect.Type) string {
	switch t.Kind() {
	case reflect.Float32, reflect.Float64:
		f, err := n.Float64()
		if err != nil || (t.Kind() == reflect.Float32 && math.Abs(f) > math.MaxFloat32) {
			return "must be a number in range, not " + n.String()
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(n.String(), 10, 64)
		if err != nil || reflect.Zero(t).OverflowUint(u) {
			return "must be a whole number in range, not " + n.String()
		}
	default:
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || reflect.Zero(t).OverflowInt(i) {
			return "must be a whole number in range, not " + n.String()
		}
	}
	return ""
}

// structFields maps the JSON names of t's fields (and of its embedded
// structs' fields) to the fields.
func structFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, ef := range structFields(ft) {
					if _, taken := out[n]; !taken {
						out[n] = ef
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	if strings.HasSuffix(path, ".") {
		return path + key
	}
	return path + "." + key
}

func jsonValueKind(v any) string {
	switch v := v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number (" + v.String() + ")"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "null"
}

// mergeFieldErrors returns decodeErrs followed by the errors of later
// checks, leaving out those about a field at or under a path that already
// has a decoding error (its value was dropped, so "is required" and the
// like would only repeat it), and at most maxFieldErrors in all. With that
// many decoding errors the later checks saw only part of the body, and
// their errors are left out.
func mergeFieldErrors(decodeErrs, later []spec.FieldError) []spec.FieldError {
	if len(decodeErrs) >= maxFieldErrors {
		return decodeErrs[:maxFieldErrors]
	}
	bad := make(map[string]bool, len(decodeErrs))
	for _, d := range decodeErrs {
		bad[d.Field] = true
	}
	out := append([]spec.FieldError(nil), decodeErrs...)
	for _, e := range later {
		if len(out) == maxFieldErrors {
			break
		}
		if !underBad(e.Field, bad) {
			out = append(out, e)
		}
	}
	return out
}

// underBad reports whether path or one of its parents (a.b[2].c: a.b[2],
// a.b, a) is in bad.
func underBad(path string, bad map[string]bool) bool {
	if len(bad) == 0 {
		return false
	}
	for {
		if bad[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return false
		}
		path = path[:i]
	}
}
