// Package extract produces a job's result.json: structured data taken from
// a page, either deterministically with CSS selectors (Selectors) or by a
// language model behind an OpenAI-compatible endpoint, guided by a JSON
// Schema derived from plain-language field descriptions (Schema).
//
// Failures are *spec.Error values with code extraction_failed; Retryable is
// true only when the model server was unavailable (5xx, 429, timeouts).
package extract
