package extract

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestJSONSchemaOrders(t *testing.T) {
	got, err := JSONSchema(json.RawMessage(`{"orders": "array of recent order IDs and statuses", "shop": {"name": "the shop name"}}`))
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, `{
		"type": "object",
		"properties": {
			"orders": {
				"type": "array",
				"description": "array of recent order IDs and statuses",
				"items": {
					"type": "object",
					"properties": {
						"id": {"type": "string", "description": "recent order ids"},
						"status": {"type": "string", "description": "statuses"}
					},
					"required": ["id", "status"],
					"additionalProperties": false
				}
			},
			"shop": {
				"type": "object",
				"properties": {"name": {"type": "string", "description": "the shop name"}},
				"required": ["name"],
				"additionalProperties": false
			}
		},
		"required": ["orders", "shop"],
		"additionalProperties": false
	}`)
}

func TestJSONSchemaTypes(t *testing.T) {
	tests := []struct {
		desc string
		want string // JSON of the field's schema without its description
	}{
		{"the shop name", `{"type":"string"}`},
		{"phone number", `{"type":"string"}`},
		{"order number", `{"type":"string"}`},
		{"address of the head office", `{"type":"string"}`},
		{"name and address of the shop", `{"type":"string"}`},
		{"current status", `{"type":"string"}`},
		{"the product price in USD", `{"type":"number"}`},
		{"number of reviews", `{"type":"number"}`},
		{"review count", `{"type":"number"}`},
		{"how many items are in the cart", `{"type":"number"}`},
		{"total amount", `{"type":"number"}`},
		{"whether the item is in stock", `{"type":"boolean"}`},
		{"is the shop open today", `{"type":"boolean"}`},
		{"has free shipping", `{"type":"boolean"}`},
		{"true if the user is logged in", `{"type":"boolean"}`},
		{"list of tags", `{"type":"array","items":{"type":"string"}}`},
		{"all product names", `{"type":"array","items":{"type":"string"}}`},
		{"product categories", `{"type":"array","items":{"type":"string"}}`},
		{"prices of the products", `{"type":"array","items":{"type":"string"}}`},
		{"array of recent order IDs and statuses", `{"type":"array","items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"}},"required":["id","status"],"additionalProperties":false}}`},
		{"products with name, price and url", `{"type":"array","items":{"type":"object","properties":{"name":{"type":"string"},"price":{"type":"string"},"url":{"type":"string"}},"required":["name","price","url"],"additionalProperties":false}}`},
		{"customer reviews (author and rating)", `{"type":"array","items":{"type":"object","properties":{"author":{"type":"string"},"rating":{"type":"string"}},"required":["author","rating"],"additionalProperties":false}}`},
		{"list of invoice dates, numbers and totals", `{"type":"array","items":{"type":"object","properties":{"date":{"type":"string"},"number":{"type":"string"},"total":{"type":"string"}},"required":["date","number","total"],"additionalProperties":false}}`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			raw, _ := json.Marshal(map[string]string{"f": tc.desc})
			s, err := JSONSchema(raw)
			if err != nil {
				t.Fatal(err)
			}
			f := s["properties"].(map[string]any)["f"].(map[string]any)
			if f["description"] != tc.desc {
				t.Errorf("description = %v", f["description"])
			}
			jsonEqual(t, stripDescriptions(f), tc.want)
		})
	}
}

// stripDescriptions copies a schema without its "description" keywords.
func stripDescriptions(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if k != "description" {
				out[k] = stripDescriptions(e)
			}
		}
		return out
	default:
		return v
	}
}

func TestJSONSchemaForms(t *testing.T) {
	got, err := JSONSchema(json.RawMessage(`{"tags": ["tag name"], "variants": [{"size": "size label", "in_stock": "whether it is available"}], "note": ""}`))
	if err != nil {
		t.Fatal(err)
	}
	props := got["properties"].(map[string]any)
	jsonEqual(t, props["tags"], `{"type":"array","items":{"type":"string","description":"tag name"}}`)
	jsonEqual(t, props["variants"], `{"type":"array","items":{"type":"object",
		"properties":{"in_stock":{"type":"boolean","description":"whether it is available"},"size":{"type":"string","description":"size label"}},
		"required":["in_stock","size"],"additionalProperties":false}}`)
	jsonEqual(t, props["note"], `{"type":"string","description":"note"}`)
}

func TestJSONSchemaInvalid(t *testing.T) {
	for _, s := range []string{`[]`, `{}`, `{"a": 1}`, `{"a": {}}`, `{"a": ["x", "y"]}`, `{"a": "x"} {}`, `nope`} {
		if _, err := JSONSchema(json.RawMessage(s)); !errors.Is(err, ErrInvalidSchema) {
			t.Errorf("JSONSchema(%s) error = %v, want ErrInvalidSchema", s, err)
		}
	}
}
