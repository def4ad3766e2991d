package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// The reference pontus.toml must decode, and must say exactly the defaults,
// so it cannot rot.
func TestReferenceConfigIsTheDefaults(t *testing.T) {
	data, err := os.ReadFile("pontus.toml")
	if err != nil {
		t.Fatal(err)
	}
	var got fileConfig
	if err := decodeConfig(string(data), &got); err != nil {
		t.Fatalf("pontus.toml: %v", err)
	}
	want := defaultFileConfig()
	// Keys whose default is computed at run time are written empty.
	want.Runner.Name = ""
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"controlplane", got.ControlPlane, want.ControlPlane},
		{"runner", got.Runner, want.Runner},
		{"observer", got.Observer, want.Observer},
	} {
		if !reflect.DeepEqual(normalize(c.got), normalize(c.want)) {
			t.Errorf("[%s] in pontus.toml differs from DefaultConfig():\n file: %+v\n code: %+v", c.name, c.got, c.want)
		}
	}
}

// normalize treats nil and empty slices alike.
func normalize(v any) any {
	rv := reflect.ValueOf(v)
	out := reflect.New(rv.Type()).Elem()
	out.Set(rv)
	for i := 0; i < out.NumField(); i++ {
		f := out.Field(i)
		if f.Kind() == reflect.Slice && f.Len() == 0 && f.CanSet() {
			f.Set(reflect.Zero(f.Type()))
		}
	}
	return out.Interface()
}

func TestUnknownKeyIsNamed(t *testing.T) {
	cfg := defaultFileConfig()
	err := decodeConfig("[runner]\ncapacity = 2\ncapacty = 3\n", &cfg)
	if err == nil || !strings.Contains(err.Error(), "runner.capacty") {
		t.Fatalf("got %v, want an error naming runner.capacty", err)
	}
	err = decodeConfig("[controlplane]\nlisten = 5\n", &cfg)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("got %v, want a type error naming listen", err)
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/p.toml"
	if err := os.WriteFile(path, []byte("[controlplane]\nlisten = \"127.0.0.1:9999\"\nresults_dir = \"r\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newRoleFlags("controlplane", help{}, os.Stderr, true, false, false, false)
	cfg, err := f.parse([]string{"--config", path, "--results", "other"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.applyControlPlane(&cfg.ControlPlane); err != nil {
		t.Fatal(err)
	}
	if cfg.ControlPlane.Listen != "127.0.0.1:9999" || cfg.ControlPlane.ResultsDir != "other" {
		t.Fatalf("got listen=%s results=%s", cfg.ControlPlane.Listen, cfg.ControlPlane.ResultsDir)
	}
}

// A list of control planes is a TOML array or a comma-separated flag; a
// single string still works.
func TestControlPlaneLists(t *testing.T) {
	var cfg fileConfig
	doc := "[runner]\ncontrolplane = [\"http://a:8888\", \"http://b:8888\"]\n[observer]\ncontrolplane = \"http://a:8888\"\n"
	if err := decodeConfig(doc, &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Runner.ControlPlane.List(); !reflect.DeepEqual(got, []string{"http://a:8888", "http://b:8888"}) {
		t.Errorf("runner.controlplane = %q", got)
	}
	if cfg.Observer.ControlPlane != "http://a:8888" {
		t.Errorf("observer.controlplane = %q", cfg.Observer.ControlPlane)
	}
	if err := decodeConfig("[runner]\ncontrolplane = {a = 1}\n", &cfg); err == nil || !strings.Contains(err.Error(), "list of URL strings") {
		t.Errorf("a table for controlplane: %v", err)
	}

	f := newRoleFlags("runnerd", help{}, os.Stderr, false, false, true, true)
	cfg, err := f.parse([]string{"--controlplane", "http://a:8888,http://b:8888/"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.applyRunner(&cfg.Runner); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Runner.ControlPlane.List(); !reflect.DeepEqual(got, []string{"http://a:8888", "http://b:8888"}) {
		t.Errorf("--controlplane list = %q", got)
	}
	f = newRoleFlags("observerd", help{}, os.Stderr, false, true, true, false)
	if cfg, err = f.parse([]string{"--controlplane", "http://a:8888,,http://b:8888"}); err != nil {
		t.Fatal(err)
	}
	if err := f.applyObserver(&cfg.Observer); err == nil || !strings.Contains(err.Error(), "element 2 is empty") {
		t.Errorf("a list with an empty element: %v", err)
	}
}

// Replicas on one PostgreSQL started from one directory without --data
// get a data_dir each; an explicit one is kept.
func TestReplicaDefaultDataDirs(t *testing.T) {
	dataDir := func(args ...string) string {
		t.Helper()
		f := newRoleFlags("controlplane", help{}, os.Stderr, true, false, false, false)
		f.fs.StringVar(&f.store, "store", "", "")
		cfg, err := f.parse(args)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.applyControlPlane(&cfg.ControlPlane); err != nil {
			t.Fatal(err)
		}
		return cfg.ControlPlane.DataDir
	}
	const store = "postgres://u@127.0.0.1:5432/pontus"
	a := dataDir("--store", store, "--listen", "127.0.0.1:8801")
	b := dataDir("--store", store, "--listen", "127.0.0.1:8802")
	if a == b || !strings.HasPrefix(a, ".pontus/controlplane/") {
		t.Errorf("default data_dirs of two replicas: %q and %q", a, b)
	}
	if got := dataDir("--store", store, "--data", "/srv/cp"); got != "/srv/cp" {
		t.Errorf("explicit --data became %q", got)
	}
	if got := dataDir("--listen", "127.0.0.1:8801"); got != ".pontus/controlplane" {
		t.Errorf("SQLite data_dir became %q", got)
	}
}
