package protofmt

import (
	"strings"
	"testing"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func TestJSONIsStable(t *testing.T) {
	b := &pontusv1.Build{Id: 7, Commit: strings.Repeat("a", 40), Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED, Attempt: 1}
	got, err := JSON(b)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"id\": \"7\",\n  \"commit\": \"" + strings.Repeat("a", 40) + "\",\n  \"status\": \"BUILD_STATUS_PASSED\",\n  \"attempt\": 1\n}\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}
