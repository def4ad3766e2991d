// Command tapdemo is a small TAP plugin written with the SDK: it checks that
// hello.txt in its working directory says hello, and fails on purpose when
// given the argument "fail". Built by the host tests with
//
//	GOOS=wasip1 GOARCH=wasm go build -o tapdemo.wasm ./plugins/testdata/tapdemo
package main

import (
	"os"
	"slices"
	"strings"

	"github.com/pontus-ci/pontus/plugins/sdk"
)

func main() {
	sdk.Main(func(t *sdk.T) {
		t.Run("hello.txt says hello", func(t *sdk.T) {
			data, err := os.ReadFile("hello.txt")
			if err != nil {
				t.Fatal(err.Error())
			}
			if !strings.HasPrefix(string(data), "hello") {
				t.Failf("hello.txt = %q", data)
			}
		})
		t.Run("scratch /tmp is writable", func(t *sdk.T) {
			if err := os.WriteFile("/tmp/x", []byte("x"), 0o600); err != nil {
				t.Fail(err.Error())
			}
		})
		if slices.Contains(os.Args[1:], "fail") {
			t.Run("fails on purpose", func(t *sdk.T) { t.Fail("asked to fail") })
		}
	})
}
