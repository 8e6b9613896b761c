package spec

import "time"

// Artifact is a stored file of a job (placeholder until the artifact
// store is merged).
type Artifact struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"content_type"`
	ExpiresAt   time.Time `json:"expires_at"`
}
