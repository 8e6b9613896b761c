package convert

import (
	"strings"
)

// Metadata describes a page as its <head> does.
type Metadata struct {
	// Title is the <title>, or og:title when there is none.
	Title string `json:"title"`
	// Description is <meta name="description">, or og:description.
	Description string `json:"description"`
	// Language is the lang attribute of <html>, or the Content-Language
	// http-equiv meta.
	Language string `json:"language"`
	// Canonical is the absolute URL of <link rel="canonical">.
	Canonical string `json:"canonical"`
	// Keywords is <meta name="keywords">.
	Keywords string `json:"keywords,omitempty"`
	// Author is <meta name="author">.
	Author string `json:"author,omitempty"`
	// Favicon is the absolute URL of the first <link rel="icon">.
	Favicon string `json:"favicon,omitempty"`
	// OpenGraph holds og:* properties without the "og:" prefix (first value
	// of each).
	OpenGraph map[string]string `json:"open_graph,omitempty"`
	// Twitter holds twitter:* card properties without the "twitter:" prefix.
	Twitter map[string]string `json:"twitter,omitempty"`
}

// Metadata returns the page's title, description, language, canonical URL,
// Open Graph and Twitter card properties.
func (d *Document) Metadata() Metadata {
	var m Metadata
	if d.title != nil {
		m.Title = NodeText(d.title)
	}
	if d.htmlEl != nil {
		m.Language = strings.TrimSpace(attr(d.htmlEl, "lang"))
	}
	for _, n := range d.metas {
		content := strings.TrimSpace(attr(n, "content"))
		if content == "" {
			continue
		}
		if equiv := attr(n, "http-equiv"); equiv != "" {
			if m.Language == "" && strings.EqualFold(equiv, "content-language") {
				m.Language = content
			}
			continue
		}
		key := strings.ToLower(strings.TrimSpace(attr(n, "property")))
		if key == "" {
			key = strings.ToLower(strings.TrimSpace(attr(n, "name")))
		}
		switch {
		case key == "description":
			setFirst(&m.Description, content)
		case key == "keywords":
			setFirst(&m.Keywords, content)
		case key == "author":
			setFirst(&m.Author, content)
		case strings.HasPrefix(key, "og:") && len(key) > 3:
			m.OpenGraph = addFirst(m.OpenGraph, key[3:], content)
		case strings.HasPrefix(key, "twitter:") && len(key) > 8:
			m.Twitter = addFirst(m.Twitter, key[8:], content)
		}
	}
	for _, n := range d.links {
		href := attr(n, "href")
		if strings.TrimSpace(href) == "" {
			continue
		}
		for rel := range strings.FieldsSeq(strings.ToLower(attr(n, "rel"))) {
			switch rel {
			case "canonical":
				if m.Canonical == "" {
					m.Canonical = d.ResolveReference(href)
				}
			case "icon":
				if m.Favicon == "" {
					m.Favicon = d.ResolveReference(href)
				}
			}
		}
	}
	if m.Title == "" {
		m.Title = m.OpenGraph["title"]
	}
	if m.Description == "" {
		m.Description = m.OpenGraph["description"]
	}
	return m
}

func setFirst(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

func addFirst(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = make(map[string]string)
	}
	if _, ok := m[k]; !ok {
		m[k] = v
	}
	return m
}
