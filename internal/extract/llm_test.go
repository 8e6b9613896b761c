package extract

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

const (
	ordersSchema = `{"orders": "array of recent order IDs and statuses", "shop": {"name": "the shop name"}}`
	ordersPage   = "# Orders at Corner Shop\n\n| Order | Status |\n|---|---|\n| A-17 | shipped |\n| A-18 | pending |\n"
	ordersAnswer = `{"orders":[{"id":"A-17","status":"shipped"},{"id":"A-18","status":"pending"}],"shop":{"name":"Corner Shop"}}`
	testKey      = "sk-test-secret-key"
)

// recorded is one request the fake model server received.
type recorded struct {
	Auth string
	Body struct {
		Model          string           `json:"model"`
		Temperature    *float64         `json:"temperature"`
		Messages       []message        `json:"messages"`
		ResponseFormat *json.RawMessage `json:"response_format"`
	}
}

func (r recorded) formatType() string {
	if r.Body.ResponseFormat == nil {
		return ""
	}
	var f struct {
		Type string `json:"type"`
	}
	json.Unmarshal(*r.Body.ResponseFormat, &f)
	return f.Type
}

// fakeModel is an OpenAI-compatible chat completions server; reply decides
// each answer from the request number (0-based) and the request.
type fakeModel struct {
	mu    sync.Mutex
	reqs  []recorded
	reply func(n int, r recorded) (status int, body string)
	srv   *httptest.Server
}

func newFakeModel(t *testing.T, reply func(n int, r recorded) (int, string)) *fakeModel {
	t.Helper()
	f := &fakeModel{reply: reply}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/chat/completions" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		var r recorded
		r.Auth = req.Header.Get("Authorization")
		b, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(b, &r.Body); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		n := len(f.reqs)
		f.reqs = append(f.reqs, r)
		f.mu.Unlock()
		status, body := f.reply(n, r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeModel) config() LLMConfig {
	return LLMConfig{BaseURL: f.srv.URL + "/v1/", Model: "test-model", APIKey: testKey}
}

func (f *fakeModel) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// completion is a chat completion answering content.
func completion(content string, prompt, done int) string {
	b, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion", "model": "test-model",
		"choices": []any{map[string]any{
			"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": content},
		}},
		"usage": map[string]int{"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done},
	})
	return string(b)
}

func wantExtractionFailed(t *testing.T, err error, retryable bool) *spec.Error {
	t.Helper()
	var se *spec.Error
	if !errors.As(err, &se) || se.Code != spec.CodeExtractionFailed {
		t.Fatalf("error = %v, want extraction_failed", err)
	}
	if se.Retryable != retryable {
		t.Errorf("retryable = %v, want %v (%s)", se.Retryable, retryable, se.Message)
	}
	if strings.Contains(se.Message, testKey) {
		t.Errorf("error message leaks the API key: %s", se.Message)
	}
	return se
}

func TestSchemaRequestAndAnswer(t *testing.T) {
	f := newFakeModel(t, func(n int, r recorded) (int, string) {
		return 200, completion(ordersAnswer, 120, 30)
	})
	got, usage, err := Schema(context.Background(), f.config(), json.RawMessage(ordersSchema), ordersPage, "https://shop.example/orders")
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, ordersAnswer)
	if want := (Usage{PromptTokens: 120, CompletionTokens: 30, TotalTokens: 150}); usage != want {
		t.Errorf("usage = %+v, want %+v", usage, want)
	}

	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Auth != "Bearer "+testKey {
		t.Errorf("Authorization = %q", r.Auth)
	}
	if r.Body.Model != "test-model" || r.Body.Temperature == nil || *r.Body.Temperature != 0 {
		t.Errorf("model %q temperature %v", r.Body.Model, r.Body.Temperature)
	}
	var rf struct {
		Type       string `json:"type"`
		JSONSchema struct {
			Name   string          `json:"name"`
			Strict bool            `json:"strict"`
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	}
	if r.Body.ResponseFormat == nil || json.Unmarshal(*r.Body.ResponseFormat, &rf) != nil {
		t.Fatalf("no response_format in the request")
	}
	if rf.Type != "json_schema" || rf.JSONSchema.Name != "extraction" || !rf.JSONSchema.Strict {
		t.Errorf("response_format = %+v", rf)
	}
	derived, err := JSONSchema(json.RawMessage(ordersSchema))
	if err != nil {
		t.Fatal(err)
	}
	var sent any
	json.Unmarshal(rf.JSONSchema.Schema, &sent)
	dj, _ := json.Marshal(derived)
	jsonEqual(t, sent, string(dj))

	if len(r.Body.Messages) != 2 || r.Body.Messages[0].Role != "system" || r.Body.Messages[1].Role != "user" {
		t.Fatalf("messages = %+v", r.Body.Messages)
	}
	if !strings.Contains(r.Body.Messages[0].Content, `"additionalProperties":false`) {
		t.Errorf("system prompt lacks the schema: %s", r.Body.Messages[0].Content)
	}
	user := r.Body.Messages[1].Content
	if !strings.Contains(user, ordersPage) || !strings.Contains(user, "https://shop.example/orders") {
		t.Errorf("user message lacks the page content or URL: %s", user)
	}
}

func TestSchemaRepair(t *testing.T) {
	f := newFakeModel(t, func(n int, r recorded) (int, string) {
		if n == 0 {
			// Fenced, and the status is missing from an order.
			return 200, completion("```json\n{\"orders\":[{\"id\":\"A-17\"}],\"shop\":{\"name\":\"Corner Shop\"}}\n```", 100, 20)
		}
		return 200, completion("```json\n"+ordersAnswer+"\n```", 150, 25)
	})
	got, usage, err := Schema(context.Background(), f.config(), json.RawMessage(ordersSchema), ordersPage, "https://shop.example/orders")
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, ordersAnswer)
	if want := (Usage{PromptTokens: 250, CompletionTokens: 45, TotalTokens: 295}); usage != want {
		t.Errorf("usage = %+v, want %+v", usage, want)
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	msgs := reqs[1].Body.Messages
	if len(msgs) != 4 || msgs[2].Role != "assistant" || msgs[3].Role != "user" {
		t.Fatalf("repair messages = %+v", msgs)
	}
	if !strings.Contains(msgs[2].Content, `"id":"A-17"`) {
		t.Errorf("repair does not carry the previous answer: %q", msgs[2].Content)
	}
	if !strings.Contains(msgs[3].Content, "/orders/0") || !strings.Contains(msgs[3].Content, "status") {
		t.Errorf("repair does not carry the validation error: %q", msgs[3].Content)
	}
	if reqs[1].formatType() != "json_schema" {
		t.Errorf("repair response_format = %q", reqs[1].formatType())
	}
}

func TestSchemaStillInvalid(t *testing.T) {
	answers := []string{`not json at all`, `{"orders":"A-17","shop":{"name":"x"}}`, `{"orders":[],"shop":{"name":"x"},"extra":1}`}
	for _, bad := range answers {
		t.Run(bad, func(t *testing.T) {
			f := newFakeModel(t, func(n int, r recorded) (int, string) {
				return 200, completion(bad, 10, 5)
			})
			got, usage, err := Schema(context.Background(), f.config(), json.RawMessage(ordersSchema), ordersPage, "https://shop.example/orders")
			if got != nil {
				t.Errorf("result = %v, want nil", got)
			}
			wantExtractionFailed(t, err, false)
			if n := len(f.requests()); n != 2 {
				t.Errorf("%d requests, want 2 (one repair)", n)
			}
			if usage.TotalTokens != 30 {
				t.Errorf("usage = %+v, want both calls counted", usage)
			}
		})
	}
}

func TestSchemaResponseFormatFallback(t *testing.T) {
	tests := []struct {
		name      string
		rejects   map[string]bool // response_format types answered with 400
		wantTypes []string
	}{
		{"json_object accepted", map[string]bool{"json_schema": true}, []string{"json_schema", "json_object"}},
		{"no response_format", map[string]bool{"json_schema": true, "json_object": true}, []string{"json_schema", "json_object", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeModel(t, func(n int, r recorded) (int, string) {
				if typ := r.formatType(); tc.rejects[typ] {
					return 400, fmt.Sprintf(`{"error":{"message":"response_format.type %s is not supported","type":"invalid_request_error","param":"response_format"}}`, typ)
				}
				return 200, completion("Here you are:\n"+ordersAnswer, 10, 5)
			})
			got, _, err := Schema(context.Background(), f.config(), json.RawMessage(ordersSchema), ordersPage, "https://shop.example/orders")
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, got, ordersAnswer)
			var types []string
			for _, r := range f.requests() {
				types = append(types, r.formatType())
			}
			if strings.Join(types, ",") != strings.Join(tc.wantTypes, ",") {
				t.Errorf("response_format types = %q, want %q", types, tc.wantTypes)
			}
		})
	}
}

func TestSchemaServerErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		retryable bool
	}{
		{"server error", 503, `{"error":"overloaded"}`, true},
		{"rate limited", 429, `{"error":"slow down"}`, true},
		{"unauthorized echoing the key", 401, `{"error":{"message":"Incorrect API key provided: ` + testKey + `"}}`, false},
		{"other bad request", 400, `{"error":{"message":"model not found"}}`, false},
		{"not a completion", 200, `<html>hello</html>`, false},
		{"no choices", 200, `{"choices":[]}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeModel(t, func(n int, r recorded) (int, string) { return tc.status, tc.body })
			_, _, err := Schema(context.Background(), f.config(), json.RawMessage(ordersSchema), ordersPage, "https://shop.example/orders")
			wantExtractionFailed(t, err, tc.retryable)
			if n := len(f.requests()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

func TestSchemaTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	f := newFakeModel(t, func(n int, r recorded) (int, string) {
		<-release
		return 200, completion(ordersAnswer, 1, 1)
	})
	t.Cleanup(func() { close(release) })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := Schema(ctx, f.config(), json.RawMessage(ordersSchema), ordersPage, "https://shop.example/orders")
	wantExtractionFailed(t, err, true)

	cfg := f.config()
	cfg.HTTPClient = &http.Client{Timeout: 100 * time.Millisecond}
	_, _, err = Schema(context.Background(), cfg, json.RawMessage(ordersSchema), ordersPage, "https://shop.example/orders")
	wantExtractionFailed(t, err, true)

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, _, err = Schema(ctx, f.config(), json.RawMessage(ordersSchema), ordersPage, "https://shop.example/orders")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error = %v, want context.Canceled", err)
	}
}

func TestSchemaConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close()
	_, _, err := Schema(context.Background(), LLMConfig{BaseURL: base, Model: "m"}, json.RawMessage(ordersSchema), ordersPage, "https://shop.example/orders")
	wantExtractionFailed(t, err, true)
}

func TestSchemaTruncatesContent(t *testing.T) {
	var page strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&page, "line %04d of the page\n", i)
	}
	f := newFakeModel(t, func(n int, r recorded) (int, string) { return 200, completion(ordersAnswer, 1, 1) })
	cfg := f.config()
	cfg.MaxInputTokens = 1000
	if _, _, err := Schema(context.Background(), cfg, json.RawMessage(ordersSchema), page.String(), "https://shop.example/orders"); err != nil {
		t.Fatal(err)
	}
	r := f.requests()[0]
	total := 0
	for _, m := range r.Body.Messages {
		total += len(m.Content)
	}
	if total > 1000*charsPerToken {
		t.Errorf("prompt is %d characters, over the %d budget", total, 1000*charsPerToken)
	}
	user := r.Body.Messages[1].Content
	if !strings.Contains(user, "line 0000 of the page\n") || strings.Contains(user, "line 1999") {
		t.Error("the beginning of the page is not what was kept")
	}
	if !strings.Contains(user, "of the page\n[… content truncated …]\n-----END PAGE-----") {
		t.Errorf("not cut at a line boundary:\n%s", user[len(user)-200:])
	}
}

func TestSchemaNotConfigured(t *testing.T) {
	_, _, err := Schema(context.Background(), LLMConfig{}, json.RawMessage(ordersSchema), ordersPage, "")
	wantExtractionFailed(t, err, false)
	_, _, err = Schema(context.Background(), LLMConfig{BaseURL: "http://127.0.0.1:1/v1", Model: "m"}, json.RawMessage(`{"a": 1}`), ordersPage, "")
	wantExtractionFailed(t, err, false)
}

func TestLLMConfigRedactsKey(t *testing.T) {
	cfg := LLMConfig{BaseURL: "http://m/v1", Model: "m", APIKey: testKey}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "llm", cfg)
	j, _ := json.Marshal(cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), logged.String(), string(j)} {
		if strings.Contains(s, testKey) {
			t.Errorf("API key leaked: %s", s)
		}
	}
	if !cfg.Enabled() || (LLMConfig{BaseURL: "http://m"}).Enabled() {
		t.Error("Enabled wrong")
	}
}

func TestAnswerJSON(t *testing.T) {
	tests := map[string]string{
		`{"a":1}`:                               `{"a":1}`,
		"```json\n{\"a\":1}\n```":               `{"a":1}`,
		"Sure!\n```\n{\"a\":1}\n```\nDone.":     `{"a":1}`,
		"<think>hmm {x}</think>\n{\"a\":1}":     `{"a":1}`,
		"The answer: {\"a\":{\"b\":2}} hope so": `{"a":{"b":2}}`,
		"{\"code\":\"```x```\"}":                "{\"code\":\"```x```\"}",
	}
	for in, want := range tests {
		if got := answerJSON(in); got != want {
			t.Errorf("answerJSON(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTruncateLines(t *testing.T) {
	if s, cut := truncateLines("short", 100); s != "short" || cut {
		t.Errorf("short text changed: %q", s)
	}
	s, cut := truncateLines(strings.Repeat("é", 500), 120)
	if !cut || len(s) > 120 || !strings.HasPrefix(s, "éé") {
		t.Errorf("long line: %q", s)
	}
	if !strings.HasSuffix(s, "[… content truncated …]") {
		t.Errorf("no truncation mark: %q", s)
	}
}
