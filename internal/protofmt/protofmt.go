// Package protofmt renders API messages as stable, indented JSON for files
// and terminals. protojson deliberately varies its whitespace from build to
// build; people grep result files, so Pontus normalises it.
package protofmt

import (
	"bytes"
	"encoding/json"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// JSON returns m as protojson (lowerCamelCase names, enum names as
// strings), indented by two spaces, with a trailing newline.
func JSON(m proto.Message) ([]byte, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}
