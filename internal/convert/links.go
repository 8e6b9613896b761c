package convert

// Links returns the target of every <a href> (and <area href>) in document
// order: resolved to an absolute http or https URL, fragment removed, each
// URL once. javascript:, mailto:, tel: and other schemes are left out, as are
// relative references when the page URL is unknown.
func (d *Document) Links() []string {
	out := make([]string, 0, len(d.anchors))
	seen := make(map[string]struct{}, len(d.anchors))
	for _, a := range d.anchors {
		u, ok := d.resolve(attr(a, "href"))
		if !ok || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			continue
		}
		u.Fragment, u.RawFragment = "", ""
		s := u.String()
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		out = append(out, s)
	}
	return out
}
