package settings

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func TestParseAndApplyCeilings(t *testing.T) {
	obs := &pontusv1.BuildSettings{Retries: 2, Shards: 4, Bisect: true, Reuse: false}
	for _, tc := range []struct {
		file string
		want *pontusv1.BuildSettings
		err  string
	}{
		{"", obs, ""},
		{"test_command = \"make test\"\n[[plugins]]\nname = \"x\"\n", obs, ""},
		{"[build]\nretries = 1\nshards = 2\nbisect = false\n", &pontusv1.BuildSettings{Retries: 1, Shards: 2}, ""},
		// A repository may ask for less, never more.
		{"[build]\nretries = 9\nshards = 64\nreuse = true\n", obs, ""},
		{"[build]\nshards = 0\n", nil, "build.shards: must be 1 to 64"},
		{"[build]\nretries = 11\n", nil, "build.retries: must be 0 to 10"},
		{"[build]\nshard = 2\n", nil, "unknown key build.shard"},
		{"[build]\nshards = \"2\"\n", nil, ".pontus.toml"},
		{"[build\n", nil, ".pontus.toml"},
	} {
		tab, err := Parse([]byte(tc.file))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.file, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.file, err)
			continue
		}
		if got := tab.Apply(obs); !proto.Equal(got, tc.want) {
			t.Errorf("%q: settings %v, want %v", tc.file, got, tc.want)
		}
	}
}
