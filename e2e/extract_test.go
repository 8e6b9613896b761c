package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// productList is a shop page: three products in the HTML and, when the
// page's script runs, a fourth.
const productList = `<!doctype html><html lang="en"><head><title>Shop</title></head><body>
<h1>  Fixture
   Shop </h1>
<div class="shop"><span class="shop-name">Acme Goods</span> <a class="contact" href="contact.html">Contact</a></div>
<ul id="products">
  <li class="product" data-sku="W-1"><a class="name" href="/p/widget?ref=list">Widget</a> <span class="price">€19.99</span>
    <ul class="tags"><li>new</li><li> sale </li></ul></li>
  <li class="product" data-sku="G-2"><a class="name" href="p/gadget">Gadget <b>Pro</b></a> <span class="price">€5.00</span>
    <ul class="tags"></ul></li>
  <li class="product" data-sku="D-3"><a class="name" href="https://other.example/doohickey">Doohickey</a> <span class="price">€120.50</span>
    <ul class="tags"><li>imported</li></ul></li>
</ul>
<script>
document.getElementById('products').insertAdjacentHTML('beforeend',
  '<li class="product" data-sku="J-4"><a class="name" href="/p/js">JS Thing</a> <span class="price">€1.00</span><ul class="tags"><li>dynamic</li></ul></li>');
</script>
</body></html>`

const productSelectors = `{
  "title": "h1",
  "shop": { "name": ".shop-name", "contact": { "selector": "a.contact", "attr": "href" } },
  "names": { "selector": "#products > .product > a.name", "all": true },
  "prices": { "selector": ".product .price", "all": true },
  "links": { "selector": ".product a.name", "attr": "href", "all": true },
  "products": { "selector": ".product", "all": true, "fields": {
    "name": "a.name",
    "price": ".price",
    "url": { "selector": "a.name", "attr": "href" },
    "sku": { "selector": ":scope", "attr": "data-sku" },
    "tags": { "selector": ".tags li", "all": true }
  } },
  "missing": ".nope",
  "missing_all": { "selector": ".nope", "all": true }
}`

// expectedProducts is the exact result.json; BASE is the site's URL.
const expectedProducts = `{
  "title": "Fixture Shop",
  "shop": { "name": "Acme Goods", "contact": "BASE/shop/contact.html" },
  "names": ["Widget", "Gadget Pro", "Doohickey"JS_NAME],
  "prices": ["€19.99", "€5.00", "€120.50"JS_PRICE],
  "links": ["BASE/p/widget?ref=list", "BASE/shop/p/gadget", "https://other.example/doohickey"JS_LINK],
  "products": [
    { "name": "Widget", "price": "€19.99", "url": "BASE/p/widget?ref=list", "sku": "W-1", "tags": ["new", "sale"] },
    { "name": "Gadget Pro", "price": "€5.00", "url": "BASE/shop/p/gadget", "sku": "G-2", "tags": [] },
    { "name": "Doohickey", "price": "€120.50", "url": "https://other.example/doohickey", "sku": "D-3", "tags": ["imported"] }JS_PRODUCT
  ],
  "missing": null,
  "missing_all": []
}`

func expectedProductJSON(t *testing.T, base string, rendered bool) any {
	t.Helper()
	r := strings.NewReplacer("JS_NAME", "", "JS_PRICE", "", "JS_LINK", "", "JS_PRODUCT", "")
	if rendered {
		r = strings.NewReplacer("JS_NAME", `, "JS Thing"`, "JS_PRICE", `, "€1.00"`, "JS_LINK", `, "BASE/p/js"`,
			"JS_PRODUCT", `, { "name": "JS Thing", "price": "€1.00", "url": "BASE/p/js", "sku": "J-4", "tags": ["dynamic"] }`)
	}
	s := strings.ReplaceAll(r.Replace(expectedProducts), "BASE", base)
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("expected JSON literal: %v\n%s", err, s)
	}
	return v
}

// sameJSON compares a job's result.json with want exactly.
func sameJSON(t *testing.T, what string, got json.RawMessage, want any) {
	t.Helper()
	var v any
	if err := json.Unmarshal(got, &v); err != nil {
		t.Fatalf("%s: result.json %q: %v", what, got, err)
	}
	if !reflect.DeepEqual(v, want) {
		w, _ := json.MarshalIndent(want, "", "  ")
		g, _ := json.MarshalIndent(v, "", "  ")
		t.Errorf("%s: result.json\n%s\nwant\n%s", what, g, w)
	}
}

func TestExtractSelectors(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 4}) // no language model configured
	site := NewSite(t, map[string]http.HandlerFunc{"/shop/list": html(productList)})
	job := func(rendered bool) map[string]any {
		return map[string]any{"url": site.URL + "/shop/list", "render_js": rendered, "output": []string{"json"},
			"extract": map[string]any{"mode": "selectors", "selectors": json.RawMessage(productSelectors)}}
	}

	pid, rid := e.Submit(keyA, "fetch", job(false)), e.Submit(keyA, "fetch", job(true))
	plain, rendered := e.Wait(keyA, pid, 60*time.Second), e.Wait(keyA, rid, 60*time.Second)
	for _, j := range []spec.Job{plain, rendered} {
		if j.Status != spec.StatusSucceeded {
			t.Fatalf("job %s: %s %+v", j.ID, j.Status, j.Error)
		}
		if j.Result.HTML != nil || j.Result.Usage != nil {
			t.Errorf("job %s: html or usage without asking: %+v", j.ID, j.Result)
		}
	}
	sameJSON(t, "plain", plain.Result.JSON, expectedProductJSON(t, site.URL, false))
	sameJSON(t, "rendered (final DOM)", rendered.Result.JSON, expectedProductJSON(t, site.URL, true))

	// "json" needs "extract"; schema extraction needs a model, and none is
	// configured: refused at submit time.
	var p problemBody
	if r := e.Do("POST", "/v1/fetch", keyA, map[string]any{"url": site.URL + "/shop/list", "output": []string{"json"}}, &p); r.StatusCode != 422 || p.fields() != "extract" {
		t.Errorf("json without extract: %d %+v", r.StatusCode, p)
	}
	p = problemBody{}
	r := e.Do("POST", "/v1/fetch", keyA, map[string]any{"url": site.URL + "/shop/list", "output": []string{"json"},
		"extract": map[string]any{"mode": "schema", "schema": map[string]string{"product": "name of the product"}}}, &p)
	if r.StatusCode != 422 || p.Code != "extraction_unavailable" {
		t.Errorf("schema without a model: %d %+v", r.StatusCode, p)
	}
}

// schemaLLM is a local OpenAI-compatible server for schema extraction. It
// answers by the marker it finds in the page content: MODE-VALID a valid
// answer, MODE-REPAIR an invalid one and then (after the repair prompt) a
// valid one, MODE-NEVER always an invalid one. Each call reports usage
// 100 + 20 tokens.
type schemaLLM struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string][]llmCall // by marker
}

type llmCall struct {
	Auth string
	Body struct {
		Model    string `json:"model"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
		ResponseFormat struct {
			Type       string `json:"type"`
			JSONSchema struct {
				Name   string         `json:"name"`
				Schema map[string]any `json:"schema"`
				Strict bool           `json:"strict"`
			} `json:"json_schema"`
		} `json:"response_format"`
	}
}

const (
	validAnswer   = `{"product":"Widget Pro","price":19.99,"in_stock":true,"tags":["new","sale"],"seller":{"name":"Acme Goods","city":"Berlin"}}`
	invalidAnswer = `{"product":42,"price":"cheap"}`
)

func newSchemaLLM(t *testing.T) *schemaLLM {
	f := &schemaLLM{calls: map[string][]llmCall{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		var c llmCall
		c.Auth = r.Header.Get("Authorization")
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &c.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		marker := ""
		for _, m := range []string{"MODE-VALID", "MODE-REPAIR", "MODE-NEVER"} {
			if strings.Contains(string(b), m) {
				marker = m
			}
		}
		f.mu.Lock()
		f.calls[marker] = append(f.calls[marker], c)
		f.mu.Unlock()
		answer := invalidAnswer
		if marker == "MODE-VALID" || (marker == "MODE-REPAIR" && len(c.Body.Messages) > 2) {
			answer = validAnswer
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120}}`,
			c.Body.Model, answer)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *schemaLLM) Calls(marker string) []llmCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]llmCall(nil), f.calls[marker]...)
}

// productSchema is the job's plain-language schema and derivedSchema the
// JSON Schema the model must be sent for it.
const productSchema = `{
  "product": "name of the product",
  "price": "price in euros",
  "in_stock": "whether the product is in stock",
  "tags": "list of tags",
  "seller": { "name": "the seller's name", "city": "city of the seller" }
}`

const derivedSchema = `{
  "type": "object",
  "additionalProperties": false,
  "required": ["in_stock", "price", "product", "seller", "tags"],
  "properties": {
    "in_stock": { "type": "boolean", "description": "whether the product is in stock" },
    "price": { "type": "number", "description": "price in euros" },
    "product": { "type": "string", "description": "name of the product" },
    "seller": {
      "type": "object",
      "additionalProperties": false,
      "required": ["city", "name"],
      "properties": {
        "city": { "type": "string", "description": "city of the seller" },
        "name": { "type": "string", "description": "the seller's name" }
      }
    },
    "tags": { "type": "array", "description": "list of tags", "items": { "type": "string" } }
  }
}`

func productPage(marker string) http.HandlerFunc {
	return html(`<!doctype html><html><head><title>Widget Pro</title></head><body>
<h1>Widget Pro</h1><p>Price: 19.99 EUR. In stock. Tags: new, sale.</p>
<p>Sold by <b>Acme Goods</b>, Berlin.</p><footer>` + marker + `</footer></body></html>`)
}

func TestExtractSchema(t *testing.T) {
	llm := newSchemaLLM(t)
	e := Start(t, Options{Workers: 1, Concurrency: 4, Env: []string{
		"PAGEFLEET_LLM_BASE_URL=" + llm.URL + "/v1", "PAGEFLEET_LLM_MODEL=test-model", "PAGEFLEET_LLM_API_KEY=sk-test-key",
	}})
	site := NewSite(t, map[string]http.HandlerFunc{
		"/valid": productPage("MODE-VALID"), "/repair": productPage("MODE-REPAIR"), "/never": productPage("MODE-NEVER"),
	})
	job := func(path string) map[string]any {
		return map[string]any{"url": site.URL + path, "output": []string{"json"},
			"extract": map[string]any{"mode": "schema", "schema": json.RawMessage(productSchema)}}
	}
	vid, rid, nid := e.Submit(keyA, "fetch", job("/valid")), e.Submit(keyA, "fetch", job("/repair")), e.Submit(keyA, "fetch", job("/never"))
	valid, repaired, never := e.Wait(keyA, vid, 60*time.Second), e.Wait(keyA, rid, 60*time.Second), e.Wait(keyA, nid, 60*time.Second)

	var wantAnswer, wantSchema any
	json.Unmarshal([]byte(validAnswer), &wantAnswer)
	json.Unmarshal([]byte(derivedSchema), &wantSchema)
	usage := func(j spec.Job) map[string]int {
		var u map[string]int
		if j.Result != nil {
			json.Unmarshal(j.Result.Usage, &u)
		}
		return u
	}

	t.Run("valid answer", func(t *testing.T) {
		if valid.Status != spec.StatusSucceeded {
			t.Fatalf("%s %+v", valid.Status, valid.Error)
		}
		sameJSON(t, "valid", valid.Result.JSON, wantAnswer)
		if u := usage(valid); !reflect.DeepEqual(u, map[string]int{"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}) {
			t.Errorf("usage = %v", u)
		}
		calls := llm.Calls("MODE-VALID")
		if len(calls) != 1 {
			t.Fatalf("model calls = %d, want 1", len(calls))
		}
		c := calls[0]
		if c.Auth != "Bearer sk-test-key" || c.Body.Model != "test-model" {
			t.Errorf("auth %q model %q", c.Auth, c.Body.Model)
		}
		rf := c.Body.ResponseFormat
		if rf.Type != "json_schema" || !rf.JSONSchema.Strict || !reflect.DeepEqual(any(rf.JSONSchema.Schema), wantSchema) {
			got, _ := json.MarshalIndent(rf, "", "  ")
			t.Errorf("response_format does not carry the derived JSON Schema:\n%s", got)
		}
		var page string
		for _, m := range c.Body.Messages {
			if m.Role == "user" {
				page += m.Content
			}
		}
		for _, want := range []string{site.URL + "/valid", "# Widget Pro", "Price: 19.99 EUR", "**Acme Goods**", "MODE-VALID"} {
			if !strings.Contains(page, want) {
				t.Errorf("the request's page content lacks %q:\n%s", want, page)
			}
		}
	})

	t.Run("invalid answer repaired", func(t *testing.T) {
		if repaired.Status != spec.StatusSucceeded {
			t.Fatalf("%s %+v", repaired.Status, repaired.Error)
		}
		sameJSON(t, "repaired", repaired.Result.JSON, wantAnswer)
		if u := usage(repaired); !reflect.DeepEqual(u, map[string]int{"prompt_tokens": 200, "completion_tokens": 40, "total_tokens": 240}) {
			t.Errorf("usage = %v, want both calls summed", u)
		}
		calls := llm.Calls("MODE-REPAIR")
		if len(calls) != 2 {
			t.Fatalf("model calls = %d, want 2", len(calls))
		}
		ms := calls[1].Body.Messages
		if len(ms) != 4 || ms[2].Role != "assistant" || ms[2].Content != invalidAnswer || ms[3].Role != "user" || !strings.Contains(ms[3].Content, "not accepted") {
			t.Errorf("repair request messages: %+v", ms)
		}
	})

	t.Run("always invalid fails", func(t *testing.T) {
		if never.Status != spec.StatusFailed || never.Error == nil || never.Error.Code != spec.CodeExtractionFailed || never.Error.Retryable {
			t.Fatalf("%s %+v", never.Status, never.Error)
		}
		if never.Attempts != 1 {
			t.Errorf("attempts = %d: an invalid answer is not retried", never.Attempts)
		}
		if n := len(llm.Calls("MODE-NEVER")); n != 2 {
			t.Errorf("model calls = %d, want the answer and one repair", n)
		}
	})
}
