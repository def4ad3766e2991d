package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// Every key of every role (but arrays of tables) is written in the reference pontus.toml (a key
// whose default is empty or false would otherwise go missing unnoticed),
// and the reference passes validation.
func TestReferenceConfigListsEveryKey(t *testing.T) {
	data, err := os.ReadFile("pontus.toml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg fileConfig
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	inFile := map[string]bool{}
	for _, k := range md.Keys() {
		inFile[k.String()] = true
	}
	ft := reflect.TypeOf(cfg)
	for i := range ft.NumField() {
		table := ft.Field(i).Tag.Get("toml")
		if table == "" {
			continue // not a table of the file
		}
		st := ft.Field(i).Type
		for j := range st.NumField() {
			f := st.Field(j)
			key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if key == "" || key == "-" {
				continue
			}
			if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
				continue // an array of tables, shown as a commented example
			}
			if !inFile[table+"."+key] {
				t.Errorf("pontus.toml does not show %s.%s", table, key)
			}
		}
	}
	if err := cfg.ControlPlane.Validate(); err != nil {
		t.Errorf("[controlplane] in pontus.toml does not validate: %v", err)
	}
}
