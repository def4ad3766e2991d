package main

import (
	"encoding"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// FuzzDecodeConfig: decodeConfig never panics, and it never accepts a key
// that fileConfig does not have — whatever the nesting, spelling (dotted
// keys, inline tables, arrays of tables) or the rest of the file. Seeds live
// in testdata/fuzz/FuzzDecodeConfig/; run with
// go test -run '^$' -fuzz '^FuzzDecodeConfig$' -fuzztime 15s .
func FuzzDecodeConfig(f *testing.F) {
	if ref, err := os.ReadFile("pontus.toml"); err == nil {
		f.Add(string(ref))
	}
	for _, s := range []string{
		"",
		"[controlplane]\nlisten = \"127.0.0.1:0\"\npoll_timeout = \"15s\"\n",
		"controlplane.listen = \"x\"\ncontrolplane.bogus = 1\n",
		"[runner]\nlabels = [\"linux\", \"wasm\"]\ncapacity = 2\ncapacty = 3\n",
		"observer = { repo = \"/srv/r\", branches = [\"main\"], nope = true }\n",
		"[[runner]]\nname = \"x\"\n",
		"[controlplane]\nLISTEN = \"127.0.0.1:1\"\n",
		"[controlplane]\nrunner_token = \"secret\"\n",
		"[observer]\npoll_interval = 5\n",
		"[observer]\npoll_interval = \"-1h\"\n",
		"[controlplane]\nheartbeat_interval = \"99999999999999999h\"\n",
		"[plugins.go]\nmodule = \"x.wasm\"\n",
		"a = 1\n[controlplane]\n",
		"[controlplane]\n[controlplane]\n",
		"\"\\u0000\" = 1\n",
	} {
		f.Add(s)
	}
	known := reflect.TypeFor[fileConfig]()
	f.Fuzz(func(t *testing.T, data string) {
		cfg := defaultFileConfig()
		if err := decodeConfig(data, &cfg); err == nil {
			// Accepted: every key in the document must be one fileConfig has.
			var doc map[string]any
			if _, err := toml.Decode(data, &doc); err == nil {
				if bad := unknownKey(known, doc, ""); bad != "" {
					t.Fatalf("decodeConfig accepted unknown key %q in:\n%s", bad, data)
				}
			}
			// An unknown key put in front of an accepted file is named.
			err := decodeConfig(withUnknownKey(data), new(fileConfig))
			if err == nil || !strings.Contains(err.Error(), "zz_fuzz_unknown") {
				t.Fatalf("unknown key before an accepted file: got %v, want an error naming zz_fuzz_unknown; file:\n%s", err, data)
			}
			return
		}
		// Rejected files stay rejected with an unknown key in front.
		if err := decodeConfig(withUnknownKey(data), new(fileConfig)); err == nil {
			t.Fatalf("an unknown key made a rejected file acceptable:\n%s", data)
		}
	})
}

// withUnknownKey puts the line zz_fuzz_unknown = 1 at the start of data,
// after the byte-order mark the decoder skips, if any.
func withUnknownKey(data string) string {
	for _, bom := range []string{"\xef\xbb\xbf", "\xff\xfe", "\xfe\xff"} {
		if rest, ok := strings.CutPrefix(data, bom); ok {
			return bom + "zz_fuzz_unknown = 1\n" + rest
		}
	}
	return "zz_fuzz_unknown = 1\n" + data
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// unknownKey returns the first key path of doc that type t (decoded the way
// BurntSushi/toml decodes: tag name, else field name, case-insensitively)
// has no place for, or "".
func unknownKey(t reflect.Type, doc any, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch v := doc.(type) {
	case []map[string]any:
		for _, m := range v {
			if bad := unknownKey(t, m, path); bad != "" {
				return bad
			}
		}
		return ""
	case []any:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return ""
		}
		for _, e := range v {
			if bad := unknownKey(t.Elem(), e, path); bad != "" {
				return bad
			}
		}
		return ""
	case map[string]any:
		if t.Kind() != reflect.Struct || t == durationType || reflect.PointerTo(t).Implements(textUnmarshalerType) {
			return "" // a map field takes any key; other types fail to decode a table
		}
		for k, sub := range v {
			field, ok := fieldFor(t, k)
			if !ok {
				return path + k
			}
			if bad := unknownKey(field.Type, sub, path+k+"."); bad != "" {
				return bad
			}
		}
	}
	return ""
}

func fieldFor(t reflect.Type, key string) (reflect.StructField, bool) {
	var fold reflect.StructField
	found := false
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if name == key {
			return sf, true
		}
		if !found && strings.EqualFold(name, key) {
			fold, found = sf, true
		}
	}
	return fold, found
}
