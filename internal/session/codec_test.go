package session

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

var fuzzKey = bytes.Repeat([]byte{0x42}, 32)

const fuzzAAD = "s:acme:fuzz"

func TestEncodeDecode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		st     *spec.State
		key    []byte
		header byte
	}{
		{"plain", richState(), nil, formatV1},
		{"gzip", bigState(4 << 10), nil, formatV1 | flagGzip},
		{"sealed", richState(), fuzzKey, formatV1 | flagSealed},
		{"sealed gzip", bigState(4 << 10), fuzzKey, formatV1 | flagGzip | flagSealed},
		{"nil", nil, nil, formatV1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeState(tc.st, tc.key, fuzzAAD)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != tc.header {
				t.Errorf("header 0x%02x, want 0x%02x", b[0], tc.header)
			}
			got, err := DecodeState(b, tc.key, fuzzAAD)
			if err != nil {
				t.Fatal(err)
			}
			if !spec.EqualStates(got, tc.st) {
				t.Errorf("round trip: got %+v", got)
			}
			if tc.key == nil {
				return
			}
			if _, err := DecodeState(b, fuzzKey, "s:acme:other"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("other session: %v", err)
			}
			flipped := bytes.Clone(b)
			flipped[0] ^= flagGzip
			if _, err := DecodeState(flipped, fuzzKey, fuzzAAD); !errors.Is(err, ErrCorrupt) {
				t.Errorf("header changed: %v", err)
			}
			flipped = bytes.Clone(b)
			flipped[len(flipped)-1] ^= 1
			if _, err := DecodeState(flipped, fuzzKey, fuzzAAD); !errors.Is(err, ErrCorrupt) {
				t.Errorf("tag changed: %v", err)
			}
		})
	}
	if _, err := EncodeState(richState(), []byte("short"), fuzzAAD); err == nil {
		t.Error("EncodeState accepted a short key")
	}
}

func TestDecodeRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":           nil,
		"unknown format":  []byte("\x20{}"),
		"unknown flag":    []byte("\x14{}"),
		"bad json":        []byte("\x10{"),
		"bad gzip":        []byte("\x11not gzip"),
		"short sealed":    []byte("\x12abc"),
		"sealed, no key":  append([]byte{0x12}, make([]byte, 40)...),
		"json of a list":  []byte("\x10[]"),
		"cookie not list": []byte("\x10{\"cookies\":{}}"),
	} {
		key := fuzzKey
		if name == "sealed, no key" {
			key = nil
		}
		if _, err := DecodeState(b, key, fuzzAAD); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzDecodeState feeds arbitrary bytes to the decoder, with and without a
// key: it must never panic, and what it accepts must encode and decode again
// to the same state.
func FuzzDecodeState(f *testing.F) {
	for _, st := range []*spec.State{nil, richState(), bigState(2 << 10)} {
		for _, key := range [][]byte{nil, fuzzKey} {
			b, err := EncodeState(st, key, fuzzAAD)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, key != nil)
		}
	}
	f.Add([]byte("\x10null"), false)
	f.Add([]byte("\x11\x1f\x8b\x08\x00\x00\x00\x00\x00"), false)
	f.Fuzz(func(t *testing.T, b []byte, sealed bool) {
		var key []byte
		if sealed {
			key = fuzzKey
		}
		st, err := DecodeState(b, key, fuzzAAD)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := EncodeState(st, key, fuzzAAD)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := DecodeState(again, key, fuzzAAD)
		if err != nil {
			t.Fatalf("decode of re-encoded state: %v", err)
		}
		if !spec.EqualStates(st, back) {
			t.Fatalf("re-encoding changed the state")
		}
	})
}
