package session

import (
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Format header of an encoded state: the high nibble is the format version,
// the low bits say how the payload is wrapped.
const (
	formatV1      = 0x10
	flagGzip      = 0x01
	flagSealed    = 0x02
	formatMask    = 0xF0
	flagMask      = 0x0F
	gzipThreshold = 1 << 10
	nonceSize     = 12
	// maxDecodedBytes bounds the decompressed JSON of one state, so that a
	// small compressed blob cannot inflate without end.
	maxDecodedBytes = 64 << 20
)

// EncodeState encodes st as the store keeps it: the JSON of the normalized
// state, gzip-compressed when larger than 1 KiB, sealed with AES-256-GCM
// when key is set (aad, the session's identity, is bound to the blob), behind
// a one-byte format header. st is not modified.
func EncodeState(st *spec.State, key []byte, aad string) ([]byte, error) {
	raw, err := normalizedJSON(st)
	if err != nil {
		return nil, err
	}
	return encodeJSON(raw, key, aad)
}

func normalizedJSON(st *spec.State) ([]byte, error) {
	c := spec.CloneState(st)
	c.Normalize()
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode session state: %w", err)
	}
	return raw, nil
}

func encodeJSON(raw []byte, key []byte, aad string) ([]byte, error) {
	if len(raw) > maxDecodedBytes {
		return nil, fmt.Errorf("%w: %d bytes of JSON", ErrTooLarge, len(raw))
	}
	header := byte(formatV1)
	payload := raw
	if len(raw) > gzipThreshold {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
		if _, err := zw.Write(raw); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		header |= flagGzip
		payload = buf.Bytes()
	}
	if key == nil {
		out := make([]byte, 0, 1+len(payload))
		return append(append(out, header), payload...), nil
	}
	header |= flagSealed
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(payload)+aead.Overhead())
	out[0] = header
	if _, err := rand.Read(out[1 : 1+nonceSize]); err != nil {
		return nil, fmt.Errorf("session nonce: %w", err)
	}
	return aead.Seal(out, out[1:1+nonceSize], payload, additionalData(header, aad)), nil
}

// DecodeState decodes a blob written by EncodeState. key must be the key it
// was sealed with (a plaintext blob decodes with or without a key) and aad
// the same session identity. It never panics; every failure wraps ErrCorrupt.
func DecodeState(b []byte, key []byte, aad string) (*spec.State, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrCorrupt)
	}
	header := b[0]
	if header&formatMask != formatV1 || header&flagMask&^(flagGzip|flagSealed) != 0 {
		return nil, fmt.Errorf("%w: unknown format 0x%02x", ErrCorrupt, header)
	}
	payload := b[1:]
	if header&flagSealed != 0 {
		if key == nil {
			return nil, fmt.Errorf("%w: state is encrypted and no key is configured", ErrCorrupt)
		}
		aead, err := newAEAD(key)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if len(payload) < nonceSize+aead.Overhead() {
			return nil, fmt.Errorf("%w: sealed state too short", ErrCorrupt)
		}
		payload, err = aead.Open(nil, payload[:nonceSize], payload[nonceSize:], additionalData(header, aad))
		if err != nil {
			return nil, fmt.Errorf("%w: wrong key or not this session's state", ErrCorrupt)
		}
	}
	if header&flagGzip != 0 {
		zr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		raw, err := io.ReadAll(io.LimitReader(zr, maxDecodedBytes+1))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if len(raw) > maxDecodedBytes {
			return nil, fmt.Errorf("%w: state inflates beyond %d bytes", ErrCorrupt, maxDecodedBytes)
		}
		payload = raw
	}
	st := &spec.State{}
	if err := json.Unmarshal(payload, st); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	st.Normalize()
	return st, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, errors.New("session key must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func additionalData(header byte, aad string) []byte {
	out := make([]byte, 0, 1+len(aad))
	return append(append(out, header), aad...)
}
