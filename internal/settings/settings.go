// Package settings is what a build's settings (retries, shards, bisection,
// verdict reuse) may be, and the [build] table of a repository's
// .pontus.toml that may lower them. The observer applies the table to the
// commits it reports; the runner accepts the table in the .pontus.toml it
// reads, since the settings reach it with the job.
package settings

import (
	"fmt"

	"github.com/BurntSushi/toml"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Limits on build settings, checked by the observer and the control plane.
const (
	MaxRetries = 10
	MaxShards  = 64
	// MaxFileBytes is the largest .pontus.toml the observer reads.
	MaxFileBytes = 64 << 10
)

// File is the name of a repository's own configuration.
const File = ".pontus.toml"

// Table is the [build] table of a repository's .pontus.toml. Unset keys
// keep the observer's values; set ones may only lower them.
type Table struct {
	Retries *int32 `toml:"retries"`
	Shards  *int32 `toml:"shards"`
	Bisect  *bool  `toml:"bisect"`
	Reuse   *bool  `toml:"reuse"`
}

// Check validates the table's values.
func (t Table) Check() error {
	if t.Retries != nil && (*t.Retries < 0 || *t.Retries > MaxRetries) {
		return fmt.Errorf("build.retries: must be 0 to %d, got %d", MaxRetries, *t.Retries)
	}
	if t.Shards != nil && (*t.Shards < 1 || *t.Shards > MaxShards) {
		return fmt.Errorf("build.shards: must be 1 to %d, got %d", MaxShards, *t.Shards)
	}
	return nil
}

// Apply returns the settings for a commit whose .pontus.toml has table t,
// under the observer's settings obs: retries and shards at most the
// observer's, bisection and reuse on only where the observer has them on.
func (t Table) Apply(obs *pontusv1.BuildSettings) *pontusv1.BuildSettings {
	s := &pontusv1.BuildSettings{Retries: obs.Retries, Shards: obs.Shards, Bisect: obs.Bisect, Reuse: obs.Reuse}
	if t.Retries != nil {
		s.Retries = min(*t.Retries, obs.Retries)
	}
	if t.Shards != nil {
		s.Shards = min(*t.Shards, obs.Shards)
	}
	if t.Bisect != nil {
		s.Bisect = *t.Bisect && obs.Bisect
	}
	if t.Reuse != nil {
		s.Reuse = *t.Reuse && obs.Reuse
	}
	return s
}

// Parse reads the [build] table of a .pontus.toml's contents. Other tables
// and keys (the runner's test_command, plugins) are not its business; an
// unknown key inside [build] is an error.
func Parse(data []byte) (Table, error) {
	var doc struct {
		Build Table `toml:"build"`
	}
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		return Table{}, fmt.Errorf("%s: %v", File, err)
	}
	for _, k := range md.Undecoded() {
		if len(k) > 1 && k[0] == "build" {
			return Table{}, fmt.Errorf("%s: unknown key %s", File, k)
		}
	}
	if err := doc.Build.Check(); err != nil {
		return Table{}, fmt.Errorf("%s: %w", File, err)
	}
	return doc.Build, nil
}
