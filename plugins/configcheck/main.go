// Command configcheck is a Pontus test plugin that checks the syntax of the
// repository's TOML and JSON files and reports each broken one with the line
// and column of the error, one TAP test per file.
//
// It walks the checkout (/src by default, or the directories given as
// arguments) and checks *.toml and *.json files. It skips .git, the
// directories named by -skip-dirs (default node_modules, vendor and
// testdata, where broken files are usually deliberate), and JSON-with-
// comments files (tsconfig*.json, jsconfig*.json, .vscode/, *.jsonc). YAML
// is not checked: a YAML parser is not in the standard library.
//
// Build it (from the repository root):
//
//	GOOS=wasip1 GOARCH=wasm go build -o configcheck.wasm ./plugins/configcheck
//
//go:generate env GOOS=wasip1 GOARCH=wasm go build -o configcheck.wasm .
package main

import (
	"flag"
	"io"
	"os"
	"path"
	"strings"

	"github.com/pontus-ci/pontus/plugins/sdk"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("configcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	skipDirs := fs.String("skip-dirs", "node_modules,vendor,testdata", "comma-separated directory `names` not to check (.git is always skipped)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	roots := fs.Args()
	if len(roots) == 0 {
		roots = []string{"/src"}
	}
	opts := sdk.WalkOptions{SkipDirs: splitList(*skipDirs), MaxSize: -1, Match: wanted}
	return sdk.RunTo(stdout, "configcheck", func(t *sdk.T) {
		files := 0
		for _, root := range roots {
			err := sdk.Walk(root, opts, func(p string, data []byte) {
				files++
				name := p
				if len(roots) > 1 {
					name = strings.TrimSuffix(root, "/") + "/" + p
				}
				t.Run(name, func(t *sdk.T) {
					if err := check(p, data); err != nil {
						t.Fail(err.Error())
					}
				})
			})
			if err != nil {
				t.Fail(err.Error())
			}
		}
		if files == 0 {
			t.Log("no TOML or JSON files found")
		}
	})
}

// wanted picks the files to check by their slash path.
func wanted(p string) bool {
	base := path.Base(p)
	switch {
	case strings.HasSuffix(base, ".toml"):
		return true
	case !strings.HasSuffix(base, ".json"):
		return false
	case strings.HasPrefix(base, "tsconfig") || strings.HasPrefix(base, "jsconfig"),
		strings.HasPrefix(p, ".vscode/") || strings.Contains(p, "/.vscode/"),
		base == "devcontainer.json" || base == ".devcontainer.json":
		return false // JSON with comments by convention
	}
	return true
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
