package controlplane

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pontus-ci/pontus/controlplane/store"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Verdict reuse: a reported commit whose tree, labels and retries equal
// those of a finished PASSED or FAILED build of the same repository takes
// that verdict when its build is created, without running (store.ReuseKey
// says what must match). TriggerBuild always runs.

// reusable returns the build whose verdict b (a build about to be created)
// may take, or nil.
func (d *dispatcher) reusable(ctx context.Context, b *pontusv1.Build) (*pontusv1.Build, error) {
	if !b.GetSettings().GetReuse() || b.Tree == "" {
		return nil, nil
	}
	from, err := d.st.Reusable(ctx, b.Repo, store.ReuseKey(b.Tree, b.Labels, b.Settings.Retries))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, errors.New("store read failed"))
	}
	return from, nil
}

// reusedBuildLocked creates b finished, with the verdict and tests of
// build from, and returns it with the mutation to persist. Its result
// files are the caller's to write once the mutation is durable.
func (d *dispatcher) reusedBuildLocked(b, from *pontusv1.Build) (*pontusv1.Build, store.Mutation) {
	now := timestamppb.New(d.now())
	b.Id, b.CreatedAt, b.FinishedAt = d.nextID, now, now
	d.nextID++
	b.MaxAttempts = int32(d.cfg.MaxAttempts)
	if b.CloneUrl == "" {
		b.CloneUrl = b.Repo
	}
	b.Status, b.ExitCode = from.Status, from.ExitCode
	b.Reason = fmt.Sprintf("reused: build %d (commit %s)", from.Id, from.Commit)
	b.ReusedBuild, b.ReusedCommit = from.Id, from.Commit
	b.Duration = durationpb.New(0)
	for _, t := range from.Tests {
		b.Tests = append(b.Tests, proto.Clone(t).(*pontusv1.TestCase))
	}
	d.metrics.finished(b)
	d.publishLocked(b)
	d.finishedLocked(b)
	return proto.Clone(b).(*pontusv1.Build), store.Mutation{PutBuild: b}
}
