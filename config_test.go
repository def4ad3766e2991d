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
