package buildtext

import (
	"testing"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func TestSummary(t *testing.T) {
	t.Parallel()
	tc := func(o ...pontusv1.TestOutcome) []*pontusv1.TestCase {
		var out []*pontusv1.TestCase
		for _, x := range o {
			out = append(out, &pontusv1.TestCase{Outcome: x})
		}
		return out
	}
	const (
		p = pontusv1.TestOutcome_TEST_OUTCOME_PASSED
		f = pontusv1.TestOutcome_TEST_OUTCOME_FAILED
		e = pontusv1.TestOutcome_TEST_OUTCOME_ERROR
		s = pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED
		k = pontusv1.TestOutcome_TEST_OUTCOME_FLAKY
		u = pontusv1.TestOutcome_TEST_OUTCOME_UNSPECIFIED
	)
	for _, c := range []struct {
		tests []*pontusv1.TestCase
		want  string
	}{
		{nil, ""},
		{tc(p), "1 passed, 0 failed"},
		{tc(p, p, f, e, s, s, k), "2 passed, 1 failed, 1 error, 2 skipped, 1 flaky"},
		{tc(e, u), "0 passed, 0 failed, 2 errors"},
	} {
		if got := Summary(c.tests); got != c.want {
			t.Errorf("Summary = %q, want %q", got, c.want)
		}
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	if got := Status(pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT); got != "TIMED_OUT" {
		t.Errorf("Status = %q", got)
	}
	if got := Status(pontusv1.BuildStatus_BUILD_STATUS_UNSPECIFIED); got != "UNKNOWN" {
		t.Errorf("Status(0) = %q", got)
	}
	if got := Outcome(pontusv1.TestOutcome_TEST_OUTCOME_FLAKY); got != "FLAKY" {
		t.Errorf("Outcome = %q", got)
	}
	for _, c := range []struct{ name, email, want string }{
		{"Ada", "ada@example.com", "Ada <ada@example.com>"}, {"", "ada@example.com", "<ada@example.com>"}, {"Ada", "", "Ada"}, {"", "", ""},
	} {
		if got := Author(&pontusv1.Build{Author: c.name, AuthorEmail: c.email}); got != c.want {
			t.Errorf("Author(%q, %q) = %q, want %q", c.name, c.email, got, c.want)
		}
	}
}
