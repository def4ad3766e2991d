package plugins

import (
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/testrun"
)

func TestTAPPluginPasses(t *testing.T) {
	t.Parallel()
	dir := checkout(t, map[string]string{"tests/hello.txt": "hello\n"})
	res, out := runPlugin(t, host(t), dir, &testrun.Plugin{Name: "tapdemo", Module: guest(t, "tapdemo")}, 30*time.Second)
	if res.Status != testrun.Passed {
		t.Fatalf("status %v (%q), want passed:\n%s", res.Status, res.Reason, out)
	}
	t.Logf("%+v\n%s", res, out)
}
