package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MaxRetryOnBlock bounds Request.RetryOnBlock.
const MaxRetryOnBlock = 5

// ProxyNone is the "proxy" value that sends a job directly, whatever the
// tenant's default pool.
const ProxyNone = "none"

// ProxyChoice is a job's "proxy": {"pool": "name"} or "none".
type ProxyChoice struct {
	// Pool names one of the tenant's proxy pools.
	Pool string
	// None sends the job directly.
	None bool
}

var errProxyChoice = errors.New(`must be "none" or {"pool": "name"}`)

// MarshalJSON writes "none" or {"pool": …}.
func (c ProxyChoice) MarshalJSON() ([]byte, error) {
	if c.None {
		return json.Marshal(ProxyNone)
	}
	return json.Marshal(struct {
		Pool string `json:"pool"`
	}{c.Pool})
}

// UnmarshalJSON reads "none" or {"pool": "name"}.
func (c *ProxyChoice) UnmarshalJSON(b []byte) error {
	*c = ProxyChoice{}
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil || s != ProxyNone {
			return errProxyChoice
		}
		c.None = true
		return nil
	}
	var v struct {
		Pool string `json:"pool"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.Pool == "" {
		return errProxyChoice
	}
	if !ValidName(v.Pool) {
		return fmt.Errorf("pool must be 1-64 characters of A-Z a-z 0-9 . _ -")
	}
	c.Pool = v.Pool
	return nil
}

// ProxyRef names one proxy: result.proxy and a session's proxy. ID is
// "<pool>-<n>", n the proxy's place (from 1) in its pool's list; it never
// carries the proxy's address or credentials.
type ProxyRef struct {
	Pool string `json:"pool"`
	ID   string `json:"id"`
}

// Blocked is result.blocked: the response matched a block rule.
type Blocked struct {
	Reason string `json:"reason"`
}

// Try is one entry of result.attempts_log: one try of the job within its
// attempt, through ProxyID ("" when direct). A try that got a response has
// its StatusCode (and BlockReason when it was blocked); one that got none
// has the ErrorCode (proxy_failed: the proxy could not be reached or
// refused the credentials).
type Try struct {
	ProxyID     string `json:"proxy_id,omitempty"`
	StatusCode  int    `json:"status_code,omitempty"`
	BlockReason string `json:"block_reason,omitempty"`
	ErrorCode   string `json:"error_code,omitempty"`
}

// BlockRule is one of a tenant's block_rules: a response with this status
// (0: any) whose body contains BodyContains ("": any body) is blocked.
type BlockRule struct {
	Status       int    `json:"status,omitempty" yaml:"status"`
	BodyContains string `json:"body_contains,omitempty" yaml:"body_contains"`
}

// Validate checks the rule; path names it ("block_rules[0]").
func (r *BlockRule) Validate(path string) []FieldError {
	var errs []FieldError
	if r.Status != 0 && (r.Status < 100 || r.Status > 599) {
		errs = append(errs, FieldError{path + ".status", "must be an HTTP status between 100 and 599"})
	}
	if r.Status == 0 && r.BodyContains == "" {
		errs = append(errs, FieldError{path, "needs status, body_contains or both"})
	}
	return errs
}

// ProxyMove records a session moving from one proxy to another.
type ProxyMove struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}
