// Package testreport turns the output of a test run into per-test results
// ([]*pontusv1.TestCase).
//
// Parse looks at what a job printed and recognises, possibly several at once
// (a job may run more than one test command):
//
//   - Python unittest -v: the "test_x (mod.Class.test_x) ... ok" lines and
//     the "FAIL:" / "ERROR:" blocks with their tracebacks (Python 3.10's
//     "test_x (mod.Class)" names too);
//   - go test -json (test2json events, with plain build output mixed in);
//   - go test -v and plain go test text, including the -test.v=test2json form
//     (framing lines prefixed with ^V) that Go test binaries compiled to
//     WebAssembly print;
//   - TAP 13/14 with YAML diagnostics, subtests, directives and bail-outs;
//   - JUnit XML, when the whole input is an XML document (the runner calls
//     ParseJUnit directly on report files a test run leaves behind).
//
// Every parser is defensive: it never panics, runs in time linear in its
// input, and keeps memory bounded per test case (MaxOutput, MaxMessage,
// MaxName). Strings are valid UTF-8, so the results always marshal.
//
// Decisions, applied the same way across formats:
//
//   - Results are ordered failures and errors first, then the rest, each
//     group in the order the output mentioned them.
//   - ERROR means the test could not run or did not finish: a unittest
//     ERROR, a Go test that panicked or never reported a result (the binary
//     died or timed out), a Go package that failed to build, a TAP bail-out or
//     a TAP plan that promised more tests than were reported.
//   - SKIPPED covers "known not to work": skips, unittest expected failures,
//     TAP "not ok … # TODO", JUnit <skipped>. A unittest unexpected success is
//     FAILED, as unittest itself counts it.
//   - Parent tests are cases of their own (TestA and TestA/sub; a TAP
//     subtest's closing test point), as go test reports them.
//   - A Go test's Message is its last "file.go:N: …" log entry (with its
//     continuation lines), or the "panic: …" line; a unittest failure's
//     Message is the exception from the traceback; TAP uses the YAML
//     "message:" (or node's "error:"); JUnit the message attribute.
package testreport
