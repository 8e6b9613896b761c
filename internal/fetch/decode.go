package fetch

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/andybalholm/brotli"
	"golang.org/x/net/html/charset"
)

// decompress wraps r in the decoders for a Content-Encoding list, undoing
// the codings in reverse order of application.
func decompress(r io.Reader, contentEncoding string) (io.Reader, error) {
	var codings []string
	for _, c := range strings.Split(contentEncoding, ",") {
		if c = strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" {
			codings = append(codings, c)
		}
	}
	for i := len(codings) - 1; i >= 0; i-- {
		switch codings[i] {
		case "gzip", "x-gzip":
			zr, err := gzip.NewReader(r)
			if err != nil {
				return nil, fmt.Errorf("gzip: %w", err)
			}
			r = zr
		case "deflate":
			r = newDeflateReader(r)
		case "br":
			r = brotli.NewReader(r)
		default:
			return nil, fmt.Errorf("unsupported content-encoding %q", codings[i])
		}
	}
	return r, nil
}

// newDeflateReader reads "deflate" bodies, which are zlib streams by the
// standard but raw DEFLATE from some servers.
func newDeflateReader(r io.Reader) io.Reader {
	br := bufio.NewReader(r)
	hdr, _ := br.Peek(2)
	if len(hdr) == 2 && hdr[0]&0x0f == 8 && (uint16(hdr[0])<<8|uint16(hdr[1]))%31 == 0 {
		if zr, err := zlib.NewReader(br); err == nil {
			return zr
		}
	}
	return flate.NewReader(br)
}

// textual reports whether a body of this media type is text to decode.
// An empty or generic binary type is sniffed.
func textual(mediaType string, body []byte) bool {
	mt := strings.ToLower(mediaType)
	switch {
	case mt == "" || mt == "application/octet-stream" || mt == "binary/octet-stream":
		sniffed, _, _ := mime.ParseMediaType(http.DetectContentType(body))
		return strings.HasPrefix(sniffed, "text/")
	case strings.HasPrefix(mt, "text/"),
		strings.HasSuffix(mt, "+xml"), strings.HasSuffix(mt, "+json"),
		strings.HasSuffix(mt, "/json"), strings.HasSuffix(mt, "/xml"),
		strings.HasSuffix(mt, "/javascript"), strings.HasSuffix(mt, "/ecmascript"),
		mt == "application/x-javascript", mt == "application/x-www-form-urlencoded",
		mt == "application/x-ndjson", mt == "application/jsonl", mt == "application/yaml",
		mt == "application/x-yaml", mt == "application/graphql-response+json":
		return true
	}
	return false
}

// toUTF8 decodes a textual body to UTF-8 using, in order, a byte order
// mark, the Content-Type charset, an HTML <meta charset>/http-equiv in the
// first 1024 bytes, UTF-8 validity, and windows-1252 as the last resort
// (WHATWG encoding sniffing). Invalid sequences become U+FFFD.
func toUTF8(body []byte, contentType string) string {
	enc, name, _ := charset.DetermineEncoding(body, contentType)
	var s string
	if name == "utf-8" || enc == nil {
		s = string(body)
	} else if out, err := enc.NewDecoder().Bytes(body); err == nil {
		s = string(out)
	} else {
		s = string(body)
	}
	s = strings.TrimPrefix(s, "\uFEFF")
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}
