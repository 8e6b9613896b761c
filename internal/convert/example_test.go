package convert_test

import (
	"fmt"

	"github.com/pagefleet/pagefleet/internal/convert"
)

func ExampleDocument_Markdown() {
	doc, err := convert.Parse(`<html><body>
		<nav><a href="/">Home</a></nav>
		<main><h1>Prices</h1>
		<table><tr><th>Item</th><th>Price</th></tr><tr><td><a href="/tea">Tea</a></td><td>3.50</td></tr></table>
		</main></body></html>`, "https://shop.example/menu")
	if err != nil {
		panic(err)
	}
	md, err := doc.Markdown()
	if err != nil {
		panic(err)
	}
	fmt.Println(md)
	// Output:
	// # Prices
	//
	// | Item | Price |
	// |---|---|
	// | [Tea](https://shop.example/tea) | 3.50 |
}

func ExampleDocument_Links() {
	doc, err := convert.Parse(`<base href="https://cdn.example/docs/">
		<a href="intro#top">Intro</a> <a href="intro">Again</a> <a href="mailto:a@example">Mail</a>`,
		"https://example.com/page")
	if err != nil {
		panic(err)
	}
	fmt.Println(doc.Links())
	// Output: [https://cdn.example/docs/intro]
}
