package extract_test

import (
	"encoding/json"
	"fmt"

	"github.com/pagefleet/pagefleet/internal/convert"
	"github.com/pagefleet/pagefleet/internal/extract"
)

func ExampleSelectors() {
	doc, err := convert.Parse(`<h1>Corner Shop</h1>
		<div class="item"><a href="/tea">Tea</a><span class="price">3.50</span></div>
		<div class="item"><a href="/cake">Cake</a></div>`, "https://shop.example/menu")
	if err != nil {
		panic(err)
	}
	out, err := extract.Selectors(doc, json.RawMessage(`{
		"shop": "h1",
		"items": {"selector": ".item", "all": true, "fields": {
			"name": "a",
			"url": {"selector": "a", "attr": "href"},
			"price": ".price"
		}}
	}`))
	if err != nil {
		panic(err)
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
	// Output:
	// {"items":[{"name":"Tea","price":"3.50","url":"https://shop.example/tea"},{"name":"Cake","price":null,"url":"https://shop.example/cake"}],"shop":"Corner Shop"}
}

func ExampleJSONSchema() {
	s, err := extract.JSONSchema(json.RawMessage(`{"orders": "array of recent order IDs and statuses"}`))
	if err != nil {
		panic(err)
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	fmt.Println(string(b))
	// Output:
	// {
	//   "additionalProperties": false,
	//   "properties": {
	//     "orders": {
	//       "description": "array of recent order IDs and statuses",
	//       "items": {
	//         "additionalProperties": false,
	//         "properties": {
	//           "id": {
	//             "description": "recent order ids",
	//             "type": "string"
	//           },
	//           "status": {
	//             "description": "statuses",
	//             "type": "string"
	//           }
	//         },
	//         "required": [
	//           "id",
	//           "status"
	//         ],
	//         "type": "object"
	//       },
	//       "type": "array"
	//     }
	//   },
	//   "required": [
	//     "orders"
	//   ],
	//   "type": "object"
	// }
}
