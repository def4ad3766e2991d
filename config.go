package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pontus-ci/pontus/controlplane"
	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/observerd"
	"github.com/pontus-ci/pontus/runnerd"
)

// fileConfig is pontus.toml: one table per role.
type fileConfig struct {
	ControlPlane controlplane.Config `toml:"controlplane"`
	Runner       runnerd.Config      `toml:"runner"`
	Observer     observerd.Config    `toml:"observer"`
	// keys are the keys the file set ("controlplane.data_dir").
	keys map[string]bool
}

// setsDirs reports whether the file chose where a role keeps its state.
func (c fileConfig) setsDirs() bool {
	return c.keys["controlplane.data_dir"] || c.keys["runner.workdir"] || c.keys["observer.data_dir"]
}

func defaultFileConfig() fileConfig {
	return fileConfig{
		ControlPlane: controlplane.DefaultConfig(),
		Runner:       runnerd.DefaultConfig(),
		Observer:     observerd.DefaultConfig(),
	}
}

// configFile says which configuration file a daemon reads: the --config
// flag, else $PONTUS_CONFIG, else ./pontus.toml when it exists, else none
// (the defaults). from says which of these it is, for the start-up log.
func configFile(flag string) (path, from string) {
	switch {
	case flag != "":
		return flag, "--config"
	case os.Getenv("PONTUS_CONFIG") != "":
		return os.Getenv("PONTUS_CONFIG"), "$PONTUS_CONFIG"
	}
	if fi, err := os.Stat("pontus.toml"); err == nil && fi.Mode().IsRegular() {
		return "pontus.toml", "./pontus.toml"
	}
	return "", ""
}

// loadConfig returns the defaults overlaid with the file at path (if
// path is not empty). Every problem is reported, each naming its key:
// syntax and type errors with the type the key expects, unknown keys with
// the key meant when one is close.
func loadConfig(path string) (fileConfig, error) {
	cfg := defaultFileConfig()
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := decodeConfig(string(data), &cfg); err != nil {
		return cfg, configErrors(path, err)
	}
	return cfg, nil
}

// configErrors prefixes each of err's problems (errors.Join) with path.
func configErrors(path string, err error) error {
	var lines []string
	for _, e := range unjoin(err) {
		lines = append(lines, path+":"+sep(e.Error())+e.Error())
	}
	return errors.New(strings.Join(lines, "\n"))
}

// sep puts a space after "file:" unless a line number follows.
func sep(msg string) string {
	if msg != "" && msg[0] >= '0' && msg[0] <= '9' {
		return ""
	}
	return " "
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// maxConfigProblems bounds how many syntax and type errors one file
// reports.
const maxConfigProblems = 20

// decodeConfig decodes data over cfg. A syntax or type error is reported
// with its line and key, then that line is set aside and the rest decoded
// again, so one run reports every such problem (up to maxConfigProblems);
// then unknown keys and numbers given where durations are expected. The
// errors are joined.
func decodeConfig(data string, cfg *fileConfig) error {
	keys := configKeys()
	lines := strings.Split(data, "\n")
	var errs []error
	for {
		fresh := *cfg
		md, err := toml.Decode(strings.Join(lines, "\n"), &fresh)
		if err == nil {
			fresh.keys = map[string]bool{}
			for _, k := range md.Keys() {
				fresh.keys[k.String()] = true
			}
			*cfg = fresh
			errs = append(errs, unknownKeys(md, keys)...)
			errs = append(errs, durationNumbers(md, keys)...)
			return errors.Join(errs...)
		}
		line, msg := explainDecodeError(err, lines, keys)
		errs = append(errs, errors.New(msg))
		if line < 1 || line > len(lines) || len(errs) >= maxConfigProblems ||
			strings.HasPrefix(strings.TrimSpace(lines[line-1]), "[") {
			// A broken table header: what follows cannot be read reliably.
			return errors.Join(errs...)
		}
		lines[line-1] = "" // set the line aside and read on
	}
}

// keyInfo is what a key of pontus.toml holds.
type keyInfo struct {
	typ reflect.Type
	def reflect.Value // its default, when known
}

// configKeys lists every key of pontus.toml ("controlplane.listen",
// "runner.plugins.module") with its Go type and default.
func configKeys() map[string]keyInfo {
	keys := map[string]keyInfo{}
	var walk func(prefix string, v reflect.Value, t reflect.Type)
	walk = func(prefix string, v reflect.Value, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			key := prefix + name
			var fv reflect.Value
			if v.IsValid() {
				fv = v.Field(i)
			}
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]():
				walk(key+".", fv, f.Type)
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
				keys[key] = keyInfo{typ: f.Type}
				walk(key+".", reflect.Value{}, f.Type.Elem())
			default:
				keys[key] = keyInfo{typ: f.Type, def: fv}
			}
		}
	}
	def := defaultFileConfig()
	walk("", reflect.ValueOf(def), reflect.TypeOf(def))
	return keys
}

// expected says what type a key takes, with an example: its default
// when that shows the form.
func expected(k keyInfo) string {
	def := ""
	if k.def.IsValid() && !k.def.IsZero() {
		switch v := k.def.Interface().(type) {
		case time.Duration:
			d := v.String() // "10m0s" → "10m"
			for strings.HasSuffix(d, "m0s") || strings.HasSuffix(d, "h0m") {
				d = d[:len(d)-2]
			}
			def = strconv.Quote(d)
		case string:
			def = strconv.Quote(v)
		case []string:
			q := make([]string, len(v))
			for i, s := range v {
				q[i] = strconv.Quote(s)
			}
			def = "[" + strings.Join(q, ", ") + "]"
		default:
			def = fmt.Sprint(v)
		}
	}
	or := func(example string) string {
		if def != "" {
			return def
		}
		return example
	}
	switch {
	case k.typ == reflect.TypeFor[time.Duration]():
		return "expected a duration in quotes like " + or(`"30s"`) + " (units ms, s, m, h)"
	case k.typ == reflect.TypeFor[dial.URLs]():
		return "expected a URL string or a list of URL strings like " + or(`"http://127.0.0.1:8888"`) + ` or ["http://a:8888", "http://b:8888"]`
	case k.typ.Kind() == reflect.String:
		return "expected a quoted string like " + or(`"value"`)
	case k.typ.Kind() == reflect.Bool:
		return "expected true or false (no quotes)"
	case k.typ.Kind() >= reflect.Int && k.typ.Kind() <= reflect.Uint64:
		return "expected a whole number like " + or("10") + " (no quotes)"
	case k.typ.Kind() == reflect.Slice && k.typ.Elem().Kind() == reflect.Struct:
		return "expected tables, written [[" + "...]]"
	case k.typ.Kind() == reflect.Slice && k.typ.Elem().Kind() == reflect.String:
		return "expected a list of quoted strings like " + or(`["a", "b"]`)
	case k.typ.Kind() == reflect.Map:
		return "expected a table of quoted strings like { KEY = \"value\" }"
	}
	return "expected a " + k.typ.String()
}

// tomlError matches BurntSushi/toml's error text, which is all its type
// errors offer: `toml: line 2 (last key "controlplane.listen"): …`.
var tomlError = regexp.MustCompile(`^toml: line (\d+)(?: \(last key "([^"]*)"\))?: (.*)$`)

// explainDecodeError turns a decode error into "LINE: KEY: what was
// expected (got VALUE)" and returns its line (0 when unknown).
func explainDecodeError(err error, lines []string, keys map[string]keyInfo) (int, string) {
	m := tomlError.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, err.Error()
	}
	line, _ := strconv.Atoi(m[1])
	key, msg := m[2], m[3]
	text := ""
	if line >= 1 && line <= len(lines) {
		text = strings.TrimSpace(lines[line-1])
	}
	name, value, assigns := strings.Cut(text, "=")
	name, value = strings.Trim(strings.TrimSpace(name), `"'`), strings.TrimSpace(value)
	k, known := keys[key]
	// A type that decodes itself says best what it takes.
	known = known && !reflect.PointerTo(k.typ).Implements(reflect.TypeFor[toml.Unmarshaler]())
	if key != "" && assigns && strings.HasSuffix(key, name) && known && !strings.Contains(msg, "already been defined") {
		return line, fmt.Sprintf("%d: %s: %s; got %s", line, key, expected(k), value)
	}
	if key != "" && !strings.Contains(msg, key) {
		return line, fmt.Sprintf("%d: %s: %s", line, key, msg)
	}
	return line, fmt.Sprintf("%d: %s", line, msg)
}

// unknownKeys reports keys of the file that no role reads, with the key
// meant when one is close.
func unknownKeys(md toml.MetaData, keys map[string]keyInfo) []error {
	var errs []error
	unknown := map[string]bool{}
	for _, k := range md.Undecoded() {
		unknown[k.String()] = true
	}
	for _, k := range md.Undecoded() {
		key := k.String()
		if len(k) > 1 && unknown[k[:len(k)-1].String()] {
			continue // its table is unknown, and said so
		}
		msg := "unknown key " + key
		if md.Type(k...) == "Hash" {
			msg = "unknown table [" + key + "]"
		}
		if near := nearestKey(key, keys); near != "" {
			msg += "; did you mean " + near + "?"
		}
		errs = append(errs, errors.New(msg))
	}
	return errs
}

// nearestKey returns the known key closest to key when it is close
// enough to be a slip (a typo, or the right key in the wrong table).
func nearestKey(key string, keys map[string]keyInfo) string {
	best, bestD := "", 0
	leaf := lastPart(key)
	candidates := map[string]bool{}
	for k := range keys {
		candidates[k] = true
		for i, c := range k {
			if c == '.' {
				candidates[k[:i]] = true // a table
			}
		}
	}
	for k := range candidates {
		d := editDistance(key, k)
		if lastPart(k) == leaf && d > 0 {
			d = min(d, 2) // the right key in another table
		}
		if best == "" || d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if bestD == 0 || bestD > max(2, len(leaf)/3) {
		return ""
	}
	return best
}

// lastPart returns "c" of "a.b.c".
func lastPart(key string) string {
	return key[strings.LastIndexByte(key, '.')+1:]
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// durationNumbers reports durations written as bare numbers, which TOML
// would read as nanoseconds.
func durationNumbers(md toml.MetaData, keys map[string]keyInfo) []error {
	var errs []error
	for _, k := range md.Keys() {
		info, ok := keys[k.String()]
		if ok && info.typ == reflect.TypeFor[time.Duration]() && md.Type(k...) != "String" {
			errs = append(errs, fmt.Errorf("%s: %s", k, expected(info)))
		}
	}
	return errs
}

// token returns a role's token: the environment variable wins, else the
// first line of the token file.
func token(envVar, file string) (string, error) {
	if t := strings.TrimSpace(os.Getenv(envVar)); t != "" {
		return t, nil
	}
	if file == "" {
		return "", nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	t, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	t = strings.TrimSpace(t)
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return t, nil
}

// logFlags are the logging flags every daemon takes.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, errors.New("--log-format: must be text or json")
}
