// Command secrets is a Pontus test plugin that fails when secrets are
// committed to the repository: private key blocks, AWS access key ids and
// secret keys, GitHub, GitLab and Slack tokens, and high-entropy values
// assigned to password, secret, api_key or token keys.
//
// It walks the checkout (/src by default, or the directories given as
// arguments), skipping .git, binary files, symbolic links and files larger
// than -max-size, and reports one TAP test per kind of secret; a failing
// test lists each finding as file:line with the secret redacted. A line
// containing "pontus:allow-secret" is never reported (for test fixtures).
//
// Build it (from the repository root):
//
//	GOOS=wasip1 GOARCH=wasm go build -o secrets.wasm ./plugins/secrets
//
// and configure it in pontus.toml:
//
//	[[runner.plugins]]
//	name = "secrets"
//	module = "/opt/pontus/plugins/secrets.wasm"
//	args = ["-skip-dirs", "node_modules,testdata"]
//
//go:generate env GOOS=wasip1 GOARCH=wasm go build -o secrets.wasm .
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pontus-ci/pontus/plugins/sdk"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("secrets", flag.ContinueOnError)
	fs.SetOutput(stderr)
	skipDirs := fs.String("skip-dirs", "node_modules", "comma-separated directory `names` not to scan (.git is always skipped)")
	maxSize := fs.Int64("max-size", sdk.DefaultMaxSize, "skip files larger than this many `bytes`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	roots := fs.Args()
	if len(roots) == 0 {
		roots = []string{"/src"}
	}
	opts := sdk.WalkOptions{SkipDirs: splitList(*skipDirs), MaxSize: *maxSize}
	return sdk.RunTo(stdout, "secrets", func(t *sdk.T) {
		rules := rules()
		byRule := map[*rule][]finding{}
		files := 0
		for _, root := range roots {
			err := sdk.Walk(root, opts, func(path string, data []byte) {
				files++
				if len(roots) > 1 {
					path = strings.TrimSuffix(root, "/") + "/" + path
				}
				for _, f := range scan(rules, path, data) {
					byRule[f.rule] = append(byRule[f.rule], f)
				}
			})
			if err != nil {
				t.Fail(err.Error())
			}
		}
		t.Logf("scanned %d files under %s", files, strings.Join(roots, ", "))
		for _, r := range rules {
			t.Run(r.id, func(t *sdk.T) {
				for _, f := range byRule[r] {
					t.Fail(fmt.Sprintf("%s:%d: %s: %s", f.path, f.line, f.rule.what, f.text))
				}
			})
		}
	})
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
