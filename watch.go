package main

import (
	"context"
	"fmt"
	"io"

	"connectrpc.com/connect"

	"github.com/pontus-ci/pontus/internal/termsafe"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// watchBuilds is `pontus builds --watch`: one WatchBuilds call prints the
// newest builds (its snapshot, oldest first), then a line per change until
// ctx ends. A watcher told to resync calls again and gets a new snapshot.
func watchBuilds(ctx context.Context, client pontusv1connect.BuildServiceClient, q *pontusv1.ListBuildsRequest, asJSON bool, stdout, stderr io.Writer) error {
	for {
		stream, err := client.WatchBuilds(ctx, &pontusv1.WatchBuildsRequest{Repo: q.Repo, Branch: q.Branch, SnapshotLimit: q.Limit})
		if err != nil {
			return err
		}
		resync := false
		for !resync && stream.Receive() {
			m := stream.Msg()
			switch {
			case m.SnapshotDone:
				fmt.Fprintln(stderr, "--- watching for changes (interrupt to stop) ---")
			case m.Resync:
				fmt.Fprintln(stderr, "--- changes were missed (this watcher was slow); reading the builds again ---")
				resync = true
			case m.Build == nil, q.Status != 0 && m.Build.Status != q.Status:
			case asJSON:
				if err := printJSON(stdout, m.Build); err != nil {
					return err
				}
				fmt.Fprintln(stdout)
			default:
				fmt.Fprintln(stdout, termsafe.String(progressLine(m.Build)))
			}
		}
		stream.Close()
		if ctx.Err() != nil {
			return nil
		}
		if !resync {
			if err := stream.Err(); err != nil {
				return err
			}
			return connect.NewError(connect.CodeUnavailable, fmt.Errorf("the control plane ended the stream"))
		}
	}
}
