package extract

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/pagefleet/pagefleet/internal/convert"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

func loadProducts(t *testing.T) *convert.Document {
	t.Helper()
	b, err := os.ReadFile("testdata/products.html")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := convert.Parse(string(b), "https://shop.example/catalog/list?page=1")
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(t *testing.T, got any, want string) {
	t.Helper()
	gb, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(gb, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expected JSON: %v", err)
	}
	gn, _ := json.Marshal(g)
	wn, _ := json.Marshal(w)
	if string(gn) != string(wn) {
		t.Errorf("got  %s\nwant %s", gn, wn)
	}
}

func TestSelectors(t *testing.T) {
	selectors := `{
		"shop": "h1.shop",
		"first_price": ".product .price",
		"names": {"selector": ".product .name", "all": true},
		"links": {"selector": ".product a.name", "attr": "href", "all": true},
		"missing": ".does-not-exist",
		"missing_attr": {"selector": "h1", "attr": "data-x"},
		"products": {"selector": ".product", "all": true, "fields": {
			"sku": {"selector": ":scope", "attr": "data-sku"},
			"name": ".name",
			"price": ".price",
			"url": {"selector": "a", "attr": "href"},
			"image": {"selector": "img", "attr": "src"},
			"tags": {"selector": ".tags li", "all": true}
		}},
		"pager": {"next": {"selector": "a[rel=next]", "attr": "href"}, "label": ".pager a"},
		"sale": {"selector": ".price.sale, .missing", "all": true},
		"nothing": {"selector": ".nothing", "all": true},
		"first_product": {"selector": ".product", "fields": {"name": ".name"}},
		"no_product": {"selector": ".none", "fields": {"name": ".name"}}
	}`
	got, err := Selectors(loadProducts(t), json.RawMessage(selectors))
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, `{
		"shop": "Corner Shop",
		"first_price": "$9.99",
		"names": ["Alpha Widget", "Beta", "Gamma"],
		"links": [
			"https://shop.example/p/alpha",
			"https://other.example/beta",
			"https://shop.example/catalog/p/gamma?x=1#top"
		],
		"missing": null,
		"missing_attr": null,
		"products": [
			{"sku": "A1", "name": "Alpha Widget", "price": "$9.99",
			 "url": "https://shop.example/p/alpha", "image": "https://shop.example/catalog/img/alpha.png",
			 "tags": ["red", "small"]},
			{"sku": "B2", "name": "Beta", "price": "$19.50",
			 "url": "https://other.example/beta", "image": null, "tags": []},
			{"sku": "C3", "name": "Gamma", "price": "$5",
			 "url": "https://shop.example/catalog/p/gamma?x=1#top", "image": null, "tags": []}
		],
		"pager": {"next": "https://shop.example/catalog/list?page=2", "label": "Next page"},
		"sale": ["$5"],
		"nothing": [],
		"first_product": {"name": "Alpha Widget"},
		"no_product": null
	}`)
}

func TestSelectorsErrors(t *testing.T) {
	doc := loadProducts(t)
	tests := []struct {
		name, selectors, want string
	}{
		{"invalid css", `{"a": "h1", "b": {"selector": "div[", "all": true}}`, "selectors.b.selector"},
		{"invalid nested css", `{"p": {"selector": ".product", "fields": {"x": "::"}}}`, "selectors.p.fields.x"},
		{"not an object", `["h1"]`, "JSON object"},
		{"empty", `{}`, "empty"},
		{"bad value", `{"a": 3}`, "selectors.a"},
		{"bad all", `{"a": {"selector": "h1", "all": "yes"}}`, "selectors.a.all"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Selectors(doc, json.RawMessage(tc.selectors))
			var se *spec.Error
			if !errors.As(err, &se) || se.Code != spec.CodeExtractionFailed || se.Retryable {
				t.Fatalf("error = %#v, want a non-retryable extraction_failed", err)
			}
			if !strings.Contains(se.Message, tc.want) {
				t.Errorf("message %q does not name %q", se.Message, tc.want)
			}
		})
	}
}
