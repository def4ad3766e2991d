// Package termsafe neutralises terminal control sequences in text that
// Pontus copies from builds (test output, test names, messages) to
// terminals and report files, so a test cannot move the cursor, retitle
// the window, hide lines or write the clipboard (OSC 52) of the person
// reading its log.
//
// Newlines and tabs pass. CSI sequences (colours, cursor movement) and
// string sequences (OSC, DCS, APC, PM, SOS) are dropped whole; a carriage
// return before a newline is dropped; every other C0 control, DEL and a
// lone ESC is shown in caret notation (^[, ^G, ^M); C1 controls as <U+009B>;
// bytes that are not UTF-8 as U+FFFD.
package termsafe

import (
	"fmt"
	"io"
	"unicode/utf8"
)

const (
	esc = 0x1b
	bel = 0x07
	// maxPending bounds how much of an unfinished sequence a Writer holds
	// back waiting for its end; beyond it the sequence is shown as text.
	maxPending = 4096
)

// Clean returns b with control sequences neutralised.
func Clean(b []byte) []byte {
	out, _ := filter(make([]byte, 0, len(b)), b, true)
	return out
}

// String is Clean for strings.
func String(s string) string { return string(Clean([]byte(s))) }

// Writer neutralises what is written through it. A sequence split across
// writes is held back until it is complete; Flush writes what is held.
type Writer struct {
	w       io.Writer
	pending []byte
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write implements io.Writer; it reports len(p) when the neutralised text
// was written.
func (w *Writer) Write(p []byte) (int, error) {
	data := append(w.pending, p...)
	out, rest := filter(make([]byte, 0, len(data)), data, false)
	w.pending = append([]byte(nil), rest...)
	if _, err := w.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what an unfinished sequence held back, neutralised.
func (w *Writer) Flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	out, _ := filter(nil, w.pending, true)
	w.pending = nil
	_, err := w.w.Write(out)
	return err
}

// filter appends data, neutralised, to out. Unless final, an unfinished
// sequence at the end is returned as rest instead.
func filter(out, data []byte, final bool) (_, rest []byte) {
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == '\n' || c == '\t':
			out = append(out, c)
			i++
		case c == '\r':
			if i+1 == len(data) && !final {
				return out, data[i:]
			}
			if i+1 < len(data) && data[i+1] == '\n' {
				i++ // CRLF: the newline follows
				continue
			}
			out = append(out, '^', 'M')
			i++
		case c == esc:
			n, complete := sequence(data[i:])
			if !complete && !final && len(data)-i < maxPending {
				return out, data[i:]
			}
			if n > 0 && complete {
				i += n // dropped whole
				continue
			}
			out = append(out, '^', '[')
			i++
		case c < 0x20 || c == 0x7f:
			out = append(out, '^', c^0x40)
			i++
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				if !final && !utf8.FullRune(data[i:]) {
					return out, data[i:]
				}
				out = utf8.AppendRune(out, utf8.RuneError)
				i++
				continue
			}
			if r >= 0x80 && r <= 0x9f {
				out = fmt.Appendf(out, "<U+%04X>", r)
			} else {
				out = append(out, data[i:i+size]...)
			}
			i += size
		}
	}
	return out, nil
}

// sequence measures the escape sequence at the start of b (b[0] is ESC):
// its length, and whether it is complete. A length of 0 means ESC does not
// start a sequence this package drops.
func sequence(b []byte) (n int, complete bool) {
	if len(b) < 2 {
		return 0, false
	}
	switch b[1] {
	case '[': // CSI: parameters 0x30–0x3F, intermediates 0x20–0x2F, final 0x40–0x7E
		for j := 2; j < len(b); j++ {
			switch c := b[j]; {
			case c >= 0x20 && c <= 0x3f:
			case c >= 0x40 && c <= 0x7e:
				return j + 1, true
			default:
				return 0, true // malformed: show it
			}
		}
		return 0, false
	case ']', 'P', '_', '^', 'X': // string sequences, ended by BEL or ESC \
		for j := 2; j < len(b); j++ {
			if b[j] == bel {
				return j + 1, true
			}
			if b[j] == esc {
				if j+1 == len(b) {
					return 0, false
				}
				if b[j+1] == '\\' {
					return j + 2, true
				}
			}
		}
		return 0, false
	}
	return 0, true
}
