package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// check returns a syntax error in data, with its line and column, or nil.
func check(name string, data []byte) error {
	if !utf8.Valid(data) {
		off := invalidUTF8(data)
		line, col := position(data, off)
		return fmt.Errorf("line %d, column %d: invalid UTF-8", line, col)
	}
	if strings.HasSuffix(name, ".toml") {
		return checkTOML(data)
	}
	return checkJSON(data)
}

func checkTOML(data []byte) error {
	var v map[string]any
	_, err := toml.Decode(string(data), &v)
	if err == nil {
		return nil
	}
	var perr toml.ParseError
	if errors.As(err, &perr) {
		return fmt.Errorf("line %d, column %d: %s", perr.Position.Line, perr.Position.Col, perr.Message)
	}
	return err
}

func checkJSON(data []byte) error {
	var raw json.RawMessage
	err := json.Unmarshal(data, &raw)
	if err == nil {
		return nil
	}
	var serr *json.SyntaxError
	if errors.As(err, &serr) {
		// Offset counts the bytes read, including the offending one.
		line, col := position(data, int(serr.Offset)-1)
		return fmt.Errorf("line %d, column %d: %s", line, col, serr.Error())
	}
	return err
}

// position returns the 1-based line and column (in characters) of byte
// offset off.
func position(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	before := data[:off]
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	return bytes.Count(before, []byte{'\n'}) + 1, utf8.RuneCount(before[lineStart:]) + 1
}

func invalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(data)
}
