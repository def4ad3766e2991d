// Package web is the control plane's dashboard: server-rendered pages built
// with html/template plus one small vanilla-JS file and one CSS file, all
// embedded with go:embed. There is no JavaScript build step and nothing is
// fetched from outside the control plane.
//
// Pages:
//
//	/               recent builds (filters: branch, status, repo, limit, before)
//	/builds/{id}    one build: header with Re-run and Cancel, attempts, per-test results
//	                (failures first), live log
//	/runners        registered runners, kept current by polling
//	/signin         sign-in form (only when a user token is configured)
//	/badge.svg      status badge of a branch (always public)
//	/static/…       the embedded CSS, JS and icon (always public)
//
// Pages are rendered from the same BuildServiceHandler that serves the
// Connect API, called in-process. Live updates do not go through this
// package: the browser calls the public API on the same origin
// (WatchBuilds and TailLog as Connect server streams over fetch, ListBuilds
// and GetBuild as unary JSON), so the dashboard is exactly as capable as any
// other API client. Actions go the same way: Re-run is TriggerBuild with the
// build's commit, repository and branch, then a move to the new build's page;
// Cancel is CancelBuild. With a user token, the API accepts the sign-in
// cookie for these calls (see [CookieName]).
//
// # Design decisions
//
//   - Sign-in stores the user token itself in the HttpOnly, SameSite=Strict
//     cookie [CookieName], so the API's auth check can accept the same cookie
//     from the dashboard's fetch calls by comparing it with the token. A
//     token must therefore be a valid cookie value (letters, digits and
//     punctuation other than `"`, `,`, `;`, `\` and space); New logs a
//     warning when it is not.
//   - Because a SameSite=Strict cookie is not sent on a navigation that
//     starts on another site (a link in a chat message), such a request gets
//     a tiny page that reloads itself; the reload is same-site, carries the
//     cookie, and only then is a missing cookie sent to /signin.
//   - Every page carries a strict Content-Security-Policy (scripts, styles
//     and connections from 'self' only, no inline script), so even a
//     templating mistake could not run injected script.
//   - Errors from the service are shown with their Connect message for
//     client-side codes (not_found, invalid_argument, unavailable, …); for
//     internal and unknown errors the page says only that the control plane
//     failed and the real error goes to the log, so no internal path or
//     stack leaks to the browser.
//   - Re-run is offered for every build, finished or not (re-running a
//     commit is never harmful: it queues one more build); Cancel only while
//     the build is queued, leased or running, and it disappears when the
//     live log reports the end. API errors are shown as text beside the
//     buttons, which stay disabled while a call is in flight.
//   - The runners page polls ListRunners every 2 s while the tab is visible
//     (document.visibilityState), and at once when it becomes visible again:
//     there is no runner stream in the API, and runner state changes slowly
//     enough that one small unary call per 2 s is cheaper than a stream. Rows
//     are keyed by runner id; a row whose only change is its last-seen time
//     is kept, so it does not flash on every heartbeat.
//   - The badge reports the newest finished build of the branch, skipping
//     CANCELED builds (a cancel says nothing about the code): passing,
//     failing, error (ERROR or TIMED_OUT), running (nothing finished yet but
//     something queued or running) or unknown.
package web
