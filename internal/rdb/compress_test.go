package rdb

import (
	"bytes"
	"strings"
	"testing"
)

// TestCompressRoundTrip checks small results stay plain, large ones are
// gzipped, and pooled writers and readers give back what went in.
func TestCompressRoundTrip(t *testing.T) {
	inputs := [][]byte{
		[]byte(`{"html":"small"}`),
		[]byte(`{"html":"` + strings.Repeat("large page ", 2000) + `"}`),
		[]byte(`{"html":"` + strings.Repeat("another large page ", 3000) + `"}`),
	}
	for round := 0; round < 3; round++ { // the pools hand out used writers
		for _, in := range inputs {
			c := compress(in)
			wantKind := byte('j')
			if len(in) >= compressAbove {
				wantKind = 'z'
				if len(c) >= len(in) {
					t.Errorf("%d bytes compressed to %d", len(in), len(c))
				}
			}
			if c[0] != wantKind {
				t.Errorf("%d bytes stored as %q, want %q", len(in), c[0], wantKind)
			}
			out, err := decompress(c)
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("round trip of %d bytes: %v (got %d bytes)", len(in), err, len(out))
			}
		}
	}
}

func BenchmarkCompress(b *testing.B) {
	in := []byte(`{"html":"` + strings.Repeat("<p>a page of text</p>", 2000) + `"}`)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := decompress(compress(in)); err != nil {
			b.Fatal(err)
		}
	}
}
