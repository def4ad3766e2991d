package runnerd

import (
	"bytes"
	"io"

	"github.com/pontus-ci/pontus/internal/testreport"
)

// goJSONMaxLine is the longest line held back to see whether it is a
// test2json event; a longer one is passed on as it is.
const goJSONMaxLine = 1 << 20

// goJSONText passes a native step's output on, turning go test -json
// lines (test2json events) into the text they carry: the log, the reports
// and the dashboard show what go test -v would have printed, never raw
// JSON, and per-test results are parsed from that text. Other output
// passes unchanged; only a line that starts with '{' is held back until
// its end, so output without line ends still streams. It is not safe for
// concurrent use (the executor writes from one goroutine).
type goJSONText struct {
	out     io.Writer
	line    []byte // a held-back line that may be an event
	midLine bool   // inside a line passed through as it came
}

func newGoJSONText(out io.Writer) *goJSONText {
	return &goJSONText{out: out}
}

func (w *goJSONText) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.midLine {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				_, err := w.out.Write(p)
				return n, err
			}
			if _, err := w.out.Write(p[:i+1]); err != nil {
				return n, err
			}
			p = p[i+1:]
			w.midLine = false
			continue
		}
		if len(w.line) == 0 && p[0] != '{' {
			w.midLine = true
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.line = append(w.line, p...)
			if len(w.line) > goJSONMaxLine {
				_, err := w.out.Write(w.line)
				w.line, w.midLine = w.line[:0], true
				return n, err
			}
			return n, nil
		}
		w.line = append(w.line, p[:i+1]...)
		p = p[i+1:]
		if err := w.emit(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// emit writes the held-back line, as text when it is an event.
func (w *goJSONText) emit() error {
	line := w.line
	w.line = w.line[:0]
	if text, ok := testreport.GoTestJSONText(line); ok {
		if text == "" {
			return nil
		}
		_, err := io.WriteString(w.out, text)
		return err
	}
	_, err := w.out.Write(line)
	return err
}

// Flush writes what is held back (a last line without its end).
func (w *goJSONText) Flush() error {
	if len(w.line) == 0 {
		return nil
	}
	return w.emit()
}
