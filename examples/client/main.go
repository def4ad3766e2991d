// Command client is a small example of calling the Pontus control plane
// with the generated Connect client: it lists recent builds and shows the
// newest one with its per-test results.
//
//	go run ./examples/client -controlplane http://127.0.0.1:8888
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

func main() {
	url := flag.String("controlplane", "http://127.0.0.1:8888", "control plane URL")
	flag.Parse()
	if err := run(*url); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Connect over HTTP/1.1 works with the default client; runners use h2c.
	client := pontusv1connect.NewBuildServiceClient(http.DefaultClient, url)
	list, err := client.ListBuilds(ctx, &pontusv1.ListBuildsRequest{Limit: 10})
	if err != nil {
		return fmt.Errorf("list builds: %w", err)
	}
	for _, b := range list.Builds {
		fmt.Printf("build %d  %s  %s  %s\n", b.Id, b.Commit[:10], b.Branch, b.Status)
	}
	if len(list.Builds) == 0 {
		return nil
	}
	res, err := client.GetBuild(ctx, &pontusv1.GetBuildRequest{BuildId: list.Builds[0].Id})
	if err != nil {
		return fmt.Errorf("get build: %w", err)
	}
	fmt.Printf("\nnewest: build %d of %s is %s\n", res.Build.Id, res.Build.Commit, res.Build.Status)
	for _, tc := range res.Build.Tests {
		fmt.Printf("  %-22s %s\n", tc.Outcome, tc.Name)
	}
	return nil
}
