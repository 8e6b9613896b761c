// Package browser is the worker's pool of headless Chrome processes. It
// renders one job at a time per browser context: each job gets a fresh
// incognito browser context and one tab in it, both thrown away afterwards, so
// nothing leaks from one job to the next.
//
// The tree is the one chromedp builds: allocator ▸ browser process ▸ per-job
// browser context ▸ tab. A [Pool] keeps [Config.Browsers] Chrome processes,
// runs at most [Config.ContextsPerBrowser] jobs on each, replaces a browser
// after [Config.JobsPerBrowser] jobs or at once when its process dies, and
// keeps [Config.WarmTabs] pre-created contexts with their tab ready per
// browser (warm spares), so that a job does not wait the 300–800 ms a new
// renderer process costs. A spare is made while the browser is idle or right
// after a job ends, never while the job that took the last one navigates; a
// job that finds none waits for the one being made, or makes its own.
//
// [Pool.Render] navigates, runs the job's actions, and returns the final DOM,
// a screenshot, the main document's status and headers, and the session state
// (cookies, localStorage, sessionStorage and IndexedDB of every origin the job
// touched) when asked. Session state handed in is restored before the page
// navigates. Failures are [*spec.Error] values with the codes of the job
// contract (navigation_timeout, dns_failure, action_failed, browser_crashed, …).
//
// Chrome runs in its own process group with Pdeathsig=SIGKILL, and
// [Pool.Stop] kills the group, so no Chrome process outlives the worker.
package browser
