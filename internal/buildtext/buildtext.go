// Package buildtext spells a build for people the same way everywhere it is
// shown — pontus show and builds, the human result file, the dashboard:
// status and outcome names as the API spells them (TIMED_OUT, never "timed
// out"), a tests summary line with its plurals right, and a commit's author.
package buildtext

import (
	"fmt"
	"strings"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Status is a build status as the API names it, without its prefix:
// PASSED, TIMED_OUT; UNKNOWN for the zero value.
func Status(s pontusv1.BuildStatus) string {
	return short(s.String(), "BUILD_STATUS_")
}

// Outcome is a test outcome as the API names it: PASSED, SKIPPED, FLAKY.
func Outcome(o pontusv1.TestOutcome) string {
	return short(o.String(), "TEST_OUTCOME_")
}

// OutcomeWidth is the width of the longest outcome name, for columns.
const OutcomeWidth = len("SKIPPED")

func short(s, prefix string) string {
	s = strings.TrimPrefix(s, prefix)
	if s == "UNSPECIFIED" {
		return "UNKNOWN"
	}
	return s
}

// Counts are a build's tests by outcome.
type Counts struct {
	Passed, Failed, Errors, Skipped, Flaky int
}

// Count counts tests by outcome; an unknown outcome counts as an error.
func Count(tests []*pontusv1.TestCase) Counts {
	var c Counts
	for _, t := range tests {
		switch t.GetOutcome() {
		case pontusv1.TestOutcome_TEST_OUTCOME_PASSED:
			c.Passed++
		case pontusv1.TestOutcome_TEST_OUTCOME_FAILED:
			c.Failed++
		case pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED:
			c.Skipped++
		case pontusv1.TestOutcome_TEST_OUTCOME_FLAKY:
			c.Flaky++
		default:
			c.Errors++
		}
	}
	return c
}

// String is the summary: "12 passed, 1 failed, 2 errors, 3 skipped, 1
// flaky" — passed and failed always, the others when there are any.
func (c Counts) String() string {
	parts := []string{fmt.Sprintf("%d passed", c.Passed), fmt.Sprintf("%d failed", c.Failed)}
	if c.Errors > 0 {
		parts = append(parts, Plural(c.Errors, "error", "errors"))
	}
	if c.Skipped > 0 {
		parts = append(parts, fmt.Sprintf("%d skipped", c.Skipped))
	}
	if c.Flaky > 0 {
		parts = append(parts, fmt.Sprintf("%d flaky", c.Flaky))
	}
	return strings.Join(parts, ", ")
}

// Summary is Count(tests).String(), or "" when there are no tests.
func Summary(tests []*pontusv1.TestCase) string {
	if len(tests) == 0 {
		return ""
	}
	return Count(tests).String()
}

// Plural is "1 error" or "2 errors".
func Plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Author is "Name <email>", or whichever of the two is known.
func Author(b *pontusv1.Build) string {
	name, email := b.GetAuthor(), b.GetAuthorEmail()
	switch {
	case name != "" && email != "":
		return name + " <" + email + ">"
	case email != "":
		return "<" + email + ">"
	}
	return name
}
