package controlplane

import (
	"bytes"
	"strings"
	"testing"
)

func TestLogCapWritesMarkerOnce(t *testing.T) {
	l := &logStore{dir: t.TempDir(), max: 100}
	chunk := bytes.Repeat([]byte("x"), 60)
	trunc, err := l.append(1, 1, 0, chunk, false)
	if err != nil || trunc {
		t.Fatalf("first chunk: %v %v", trunc, err)
	}
	trunc, err = l.append(1, 1, 60, chunk, trunc)
	if err != nil || !trunc {
		t.Fatalf("second chunk: %v %v", trunc, err)
	}
	if trunc, err = l.append(1, 1, 120, chunk, trunc); err != nil || !trunc {
		t.Fatalf("third chunk: %v %v", trunc, err)
	}
	got, err := l.readAll(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, bytes.Repeat([]byte("x"), 100)) || strings.Count(string(got), "log truncated") != 1 {
		t.Fatalf("capped log: %q", got)
	}
}

// BenchmarkAppendLog is one runner log chunk reaching the file.
func BenchmarkAppendLog(b *testing.B) {
	l := &logStore{dir: b.TempDir(), max: 1 << 40}
	chunk := bytes.Repeat([]byte("a line of test output\n"), 200) // ~4 KiB
	b.SetBytes(int64(len(chunk)))
	off := int64(0)
	for b.Loop() {
		if _, err := l.append(1, 1, off, chunk, false); err != nil {
			b.Fatal(err)
		}
		off += int64(len(chunk))
	}
}
