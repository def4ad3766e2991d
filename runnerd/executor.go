package runnerd

import (
	"context"

	"github.com/pontus-ci/pontus/internal/testrun"
)

// Executor runs one step of a job. Native satisfies it; the WebAssembly host
// in package plugins satisfies it too, without importing runnerd.
//
// Run returns when the step has ended and nothing it started still runs. It
// writes the step's output to spec.Output as it comes, ends the step with
// status TimedOut when spec.Timeout passes and Canceled when ctx ends (with
// context.Cause as the reason), and never panics on a bad spec: that is an
// Errored result.
type Executor interface {
	Run(ctx context.Context, spec testrun.Spec) testrun.Result
}
