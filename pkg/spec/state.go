package spec

// State is the stored shape of a session's browser state: the Playwright
// storageState shape (cookies and per-origin storage), extended with
// sessionStorage and IndexedDB. The browser, the plain fetcher and the
// session store all speak it, and GET /v1/sessions/{id}?include=state
// answers it.

import (
	"encoding/json"
	"sort"
)

// State is a session's browser state.
type State struct {
	Cookies []Cookie      `json:"cookies"`
	Origins []OriginState `json:"origins"`
}

// Cookie is one cookie, as Playwright's storageState writes it.
// Expires is seconds since the Unix epoch; -1 marks a session cookie.
type Cookie struct {
	Name     string  `json:"name"`
	Value    string  `json:"value"`
	Domain   string  `json:"domain"`
	Path     string  `json:"path"`
	Expires  float64 `json:"expires"`
	HTTPOnly bool    `json:"httpOnly"`
	Secure   bool    `json:"secure"`
	SameSite string  `json:"sameSite,omitempty"` // "Strict", "Lax" or "None"
}

// NameValue is one storage entry.
type NameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// OriginState is the storage of one origin (scheme://host[:port]).
type OriginState struct {
	Origin         string        `json:"origin"`
	LocalStorage   []NameValue   `json:"localStorage"`
	SessionStorage []NameValue   `json:"sessionStorage,omitempty"`
	IndexedDB      []IDBDatabase `json:"indexedDB,omitempty"`
}

// IDBDatabase is one IndexedDB database of an origin.
type IDBDatabase struct {
	Name    string           `json:"name"`
	Version int64            `json:"version"`
	Stores  []IDBObjectStore `json:"stores"`
}

// IDBObjectStore is one object store with its indexes and records.
type IDBObjectStore struct {
	Name          string          `json:"name"`
	KeyPath       json.RawMessage `json:"keyPath,omitempty"` // string, array of strings, or null
	AutoIncrement bool            `json:"autoIncrement"`
	Indexes       []IDBIndex      `json:"indexes,omitempty"`
	Records       []IDBRecord     `json:"records"`
}

// IDBIndex is an IndexedDB index definition.
type IDBIndex struct {
	Name       string          `json:"name"`
	KeyPath    json.RawMessage `json:"keyPath"`
	Unique     bool            `json:"unique"`
	MultiEntry bool            `json:"multiEntry"`
}

// IDBRecord is one IndexedDB record. Key and Value are encoded with the tagged
// encoding of the browser's serializer so that Date, Map, Set, typed arrays and
// other structured-clone values survive a round trip.
type IDBRecord struct {
	Key   json.RawMessage `json:"key,omitempty"`
	Value json.RawMessage `json:"value"`
}

// Empty reports whether the state holds nothing.
func (s *State) Empty() bool {
	if s == nil {
		return true
	}
	if len(s.Cookies) > 0 {
		return false
	}
	for _, o := range s.Origins {
		if len(o.LocalStorage) > 0 || len(o.SessionStorage) > 0 || len(o.IndexedDB) > 0 {
			return false
		}
	}
	return true
}

// Normalize sorts cookies, origins and storage entries and drops empty
// origins, so that two states with the same content encode to the same bytes.
func (s *State) Normalize() {
	if s == nil {
		return
	}
	if s.Cookies == nil {
		s.Cookies = []Cookie{}
	}
	sort.Slice(s.Cookies, func(i, j int) bool {
		a, b := s.Cookies[i], s.Cookies[j]
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Name < b.Name
	})
	out := s.Origins[:0]
	for _, o := range s.Origins {
		if len(o.LocalStorage) == 0 && len(o.SessionStorage) == 0 && len(o.IndexedDB) == 0 {
			continue
		}
		if o.LocalStorage == nil {
			o.LocalStorage = []NameValue{}
		}
		sortNV(o.LocalStorage)
		sortNV(o.SessionStorage)
		sort.Slice(o.IndexedDB, func(i, j int) bool { return o.IndexedDB[i].Name < o.IndexedDB[j].Name })
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Origin < out[j].Origin })
	if out == nil {
		out = []OriginState{}
	}
	s.Origins = out
}

func sortNV(v []NameValue) {
	sort.Slice(v, func(i, j int) bool { return v[i].Name < v[j].Name })
}

// EqualStates reports whether two states have the same content, ignoring order.
func EqualStates(a, b *State) bool {
	if a.Empty() && b.Empty() {
		return true
	}
	ca, cb := CloneState(a), CloneState(b)
	ca.Normalize()
	cb.Normalize()
	ja, _ := json.Marshal(ca)
	jb, _ := json.Marshal(cb)
	return string(ja) == string(jb)
}

// CloneState returns a deep copy (nil gives an empty state).
func CloneState(s *State) *State {
	out := &State{}
	if s == nil {
		return out
	}
	b, _ := json.Marshal(s)
	_ = json.Unmarshal(b, out)
	return out
}
