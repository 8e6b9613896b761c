package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	spec.Problem

	retryAfter time.Duration
}

func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

func problem(status int, code, detail string, errs ...spec.FieldError) *Problem {
	return &Problem{Problem: spec.Problem{Type: "https://pagefleet.dev/problems/" + strings.ReplaceAll(code, "_", "-"),
		Title: http.StatusText(status), Status: status, Detail: detail, Code: code, Errors: errs}}
}

func invalid(errs []spec.FieldError) *Problem {
	names := make([]string, 0, len(errs))
	for _, e := range errs {
		names = append(names, e.Field)
	}
	return problem(http.StatusUnprocessableEntity, "validation_failed", "invalid fields: "+strings.Join(names, ", "), errs...)
}

func notFound(what string) *Problem {
	return problem(http.StatusNotFound, "not_found", what+" not found")
}

func unavailable(err error) *Problem {
	return problem(http.StatusServiceUnavailable, "unavailable", "the store is unavailable; retry shortly")
}

func tooMany(detail string, after time.Duration) *Problem {
	p := problem(http.StatusTooManyRequests, "rate_limited", detail)
	p.retryAfter = after
	return p
}

// writeProblem writes p as application/problem+json.
func writeProblem(c echo.Context, p *Problem) error {
	if p.retryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int((p.retryAfter+time.Second-1)/time.Second)))
	}
	if p.Status == http.StatusServiceUnavailable && c.Response().Header().Get("Retry-After") == "" {
		c.Response().Header().Set("Retry-After", "1")
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	c.Response().WriteHeader(p.Status)
	return json.NewEncoder(c.Response()).Encode(p)
}

// errorHandler turns every error into problem+json.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var p *Problem
	var he *echo.HTTPError
	switch {
	case errors.As(err, &p):
	case errors.As(err, &he):
		code := strings.ReplaceAll(strings.ToLower(http.StatusText(he.Code)), " ", "_")
		msg := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok {
			msg = m
		}
		if he.Code == http.StatusRequestEntityTooLarge {
			code = "body_too_large"
		}
		p = problem(he.Code, code, msg)
	default:
		if isStoreDown(err) {
			p = unavailable(err)
		} else {
			s.log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
			p = problem(http.StatusInternalServerError, "internal_error", "internal error")
		}
	}
	_ = writeProblem(c, p)
}

// MaxJSONDepth is how deeply arrays and objects may nest in a request body.
// The deepest legitimate body (selectors nested eight levels in a batch
// template) stays well below it; a deeper one is refused before decoding.
const MaxJSONDepth = 32

// decodeJSON reads a JSON body of at most limit bytes into v, strictly: the
// whole body is read first (413 past limit), its nesting is checked with a
// cheap scan (400 past MaxJSONDepth), then it is decoded with unknown fields
// refused. A well-formed object with unknown keys or values of the wrong
// type still fills v with the rest; fieldErrs then names every such field
// by its JSON path, for the caller to report (422) with its own checks
// (mergeFieldErrors). err is a problem for a body that is not a JSON object.
func decodeJSON(c echo.Context, limit int64, v any) (fieldErrs []spec.FieldError, err error) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, limit))
	if err != nil {
		return nil, jsonProblem(err, limit)
	}
	if jsonDepthOver(body, MaxJSONDepth) {
		return nil, problem(http.StatusBadRequest, "json_too_deep", fmt.Sprintf("the JSON body nests arrays and objects deeper than %d levels", MaxJSONDepth))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		p := jsonProblem(err, limit)
		if p.Status != http.StatusUnprocessableEntity {
			return nil, p
		}
		if !oneValue(body) {
			return nil, problem(http.StatusBadRequest, "malformed_json", "the body holds more than one JSON value")
		}
		errs, ok := decodeFields(body, v, "")
		if !ok {
			return nil, p
		}
		return errs, nil
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, problem(http.StatusBadRequest, "malformed_json", "the body holds more than one JSON value")
	}
	return nil, nil
}

// oneValue reports whether body is one JSON value and nothing after it.
func oneValue(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if dec.Decode(&raw) != nil {
		return false
	}
	_, err := dec.Token()
	return err == io.EOF
}

// jsonDepthOver reports whether arrays and objects in b nest deeper than max.
// It only counts brackets outside strings; malformed JSON is left to the
// decoder.
func jsonDepthOver(b []byte, max int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > max {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}

func jsonProblem(err error, limit int64) *Problem {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return problem(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is larger than %d bytes", limit))
	case errors.Is(err, io.EOF):
		return problem(http.StatusBadRequest, "malformed_json", "the body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem(http.StatusBadRequest, "malformed_json", "the JSON body ends too early")
	case errors.As(err, &se):
		return problem(http.StatusBadRequest, "malformed_json", fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return problem(http.StatusBadRequest, "malformed_json", "the body must be a JSON object")
		}
		return invalid([]spec.FieldError{{Field: field, Message: "must be " + jsonKind(te.Type.Kind().String()) + ", not " + te.Value}})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return invalid([]spec.FieldError{{Field: f, Message: "is not a known field"}})
	}
	return problem(http.StatusBadRequest, "malformed_json", err.Error())
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int64", "float64", "uint", "int32":
		return "a number"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return "of another type"
}
