// Package poolspage serves a live page of a pool set: the seed's diagram
// drawn from [poolset.Set.Stats], each pool a box with its figures and,
// under it, the repositories that use it, then the figures a service adds
// ([Options.Extra]) and, once published ([Page.SetRelease]), the release
// report.
//
// A [Page] is an [net/http.Handler]. It serves one HTML file (CSS and
// JavaScript inline, nothing loaded from anywhere else: its
// Content-Security-Policy allows no other origin) at the path it is
// mounted on, and the JSON document ([Document], described in
// docs/POOLS_PAGE.md) at any path ending in ".json"; the page polls
// "<its path>.json" every 500 ms with fetch and updates in place, so mount
// both:
//
//	page := poolspage.New(set, poolspage.Options{Title: "shop"})
//	mux.Handle("/pools", page)
//	mux.Handle("/pools.json", page)
//
// No password is ever served: addresses come redacted from the core, and
// every string from configuration or an error (addresses, a read pool's
// reason for leaving the rotation, release errors, sections' texts) is
// passed through [poolset.Redact] again.
//
// # DOM contract
//
// Browser tests and scrapers may rely on these, and only these, names:
//
//   - each pool is an element with data-pool="<pool name>",
//     data-role="primary" or "read", and data-rotation="in", "out" or
//     "closed" (the primary: "in" while open, "closed" after Close);
//   - inside a pool element, before its repositories, its figures are
//     elements with data-field="<name>", whose text is human-readable and
//     whose data-value attribute holds the raw number (a count, or
//     nanoseconds for durations): address (text only, no data-value),
//     max_open (0: unlimited), open, in_use, idle, waiting, timeouts,
//     acquires, wait_p99; for read pools leaves, rejoins, and lag (only
//     while the health check knows it); unhealthy (text only, only while
//     the read pool is out of the rotation: why);
//   - each repository that used the pool is an element data-repo="<repo
//     name>" inside the pool element, with data-field use (text: reads,
//     writes or reads+writes), in_use, waiting, acquires, wait_p50,
//     wait_p99, longest_hold, queries, hold_p50, hold_p99, and timeouts,
//     leaks, fallbacks when not zero;
//   - each extra section is an element data-section="<Section.ID>" whose
//     rows are elements data-field="<Row.Name>" with data-value;
//   - the element with id "release" is hidden until a report is
//     published, then shown with the report's text and data-ok="true" or
//     "false" (false when a step failed or timed out);
//   - the element with id "updated" shows the time of the last successful
//     refresh, and its data-seq attribute counts them (0 before the
//     first); the element with id "conn" is hidden and empty while the
//     JSON answers, and shows a lost-connection note while it does not
//     (the page keeps the last figures and retries every 500 ms).
package poolspage
