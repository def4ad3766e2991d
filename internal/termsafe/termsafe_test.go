package termsafe

import (
	"bytes"
	"strings"
	"testing"
)

var cases = []struct{ name, in, want string }{
	{"plain", "ok\ttab\nnext\n", "ok\ttab\nnext\n"},
	{"colour", "\x1b[31mFAIL\x1b[0m test\n", "FAIL test\n"},
	{"cursor and clear", "a\x1b[2J\x1b[1;1Hb", "ab"},
	{"OSC 52 clipboard, BEL", "x\x1b]52;c;cm0gLXJmIH4=\x07y", "xy"},
	{"OSC title, ST", "x\x1b]0;pwned\x1b\\y", "xy"},
	{"DCS", "x\x1bPq#0\x1b\\y", "xy"},
	{"lone ESC", "a\x1bc b", "a^[c b"},
	{"C0 controls", "bell\x07 bs\x08 nul\x00 del\x7f", "bell^G bs^H nul^@ del^?"},
	{"CRLF and CR", "line\r\nover\rwrite", "line\nover^Mwrite"},
	{"C1 CSI", "a\u009b31mb", "a<U+009B>31mb"},
	{"invalid UTF-8", "a\x9b31m\xffb", "a\uFFFD31m\uFFFDb"},
	{"unicode passes", "grüße ✓ 日本", "grüße ✓ 日本"},
	{"unfinished CSI at end", "a\x1b[31", "a^[[31"},
	{"unfinished OSC at end", "a\x1b]52;c;abc", "a^[]52;c;abc"},
}

func TestClean(t *testing.T) {
	t.Parallel()
	for _, c := range cases {
		if got := String(c.in); got != c.want {
			t.Errorf("%s: Clean(%q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

// Split at every byte, a Writer gives what Clean gives: sequences cut
// between log chunks are still recognised.
func TestWriterAcrossSplits(t *testing.T) {
	t.Parallel()
	for _, c := range cases {
		for cut := 0; cut <= len(c.in); cut++ {
			var buf bytes.Buffer
			w := NewWriter(&buf)
			w.Write([]byte(c.in[:cut]))
			w.Write([]byte(c.in[cut:]))
			w.Flush()
			if buf.String() != c.want {
				t.Errorf("%s cut at %d: got %q, want %q", c.name, cut, buf.String(), c.want)
			}
		}
	}
}

// An endless unterminated OSC is not held back forever.
func TestWriterBoundsWhatItHolds(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Write([]byte("\x1b]52;c;"))
	for range 3 {
		w.Write([]byte(strings.Repeat("A", 2000)))
	}
	if len(w.pending) >= maxPending || !strings.HasPrefix(buf.String(), "^[]52;c;") {
		t.Fatalf("held %d bytes, wrote %q…", len(w.pending), buf.String()[:min(20, buf.Len())])
	}
}

func FuzzWriterMatchesClean(f *testing.F) {
	for _, c := range cases {
		f.Add(c.in, 3)
	}
	f.Fuzz(func(t *testing.T, in string, cut int) {
		want := Clean([]byte(in))
		if bytes.IndexByte(want, 0x1b) >= 0 || bytes.IndexByte(want, 0x07) >= 0 {
			t.Fatalf("Clean(%q) = %q still holds ESC or BEL", in, want)
		}
		if cut < 0 || cut > len(in) {
			return
		}
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.Write([]byte(in[:cut]))
		w.Write([]byte(in[cut:]))
		w.Flush()
		if !bytes.Equal(buf.Bytes(), want) {
			t.Fatalf("Writer %q != Clean %q", buf.Bytes(), want)
		}
	})
}
