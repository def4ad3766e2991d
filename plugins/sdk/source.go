//go:build !wasip1

package sdk

import "embed"

// Source is this package's own source: its go.mod and Go files, tests
// included. The pontus binary embeds it so that `pontus plugin new` can
// write a copy of the SDK beside a new plugin, which then builds without
// the network against any Pontus checkout or none. The file is left out of
// wasip1 builds, so plugins do not carry it.
//
//go:embed go.mod *.go
var Source embed.FS
