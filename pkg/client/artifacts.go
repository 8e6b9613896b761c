package client

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// Artifact types of a job and its result.
type (
	// Artifact is a file a job produced (Result.Artifacts), with a signed
	// link that needs no API key until it expires.
	Artifact = spec.Artifact
	// ScreenshotOptions are a job's "screenshot" settings.
	ScreenshotOptions = spec.ScreenshotOptions
	// PDFOptions are a job's "pdf" settings.
	PDFOptions = spec.PDFOptions
	// PDFInfo is Result.PDF.
	PDFInfo = spec.PDFInfo
)

// Artifacts modes of a job (Request.Artifacts).
const (
	ArtifactsInline = spec.ArtifactsInline
	ArtifactsURL    = spec.ArtifactsURL
)

// DownloadArtifact reads an artifact through its signed link (no API key
// is sent). A link that expired answers an *Error with status 410.
func (c *Client) DownloadArtifact(ctx context.Context, a Artifact) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", a.ID, err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errorFrom(resp)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", a.ID, err)
	}
	return b, nil
}
