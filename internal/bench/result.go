package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Figure is one measured number, printed as key=value.
type Figure struct {
	Key   string
	Value float64
	// Digits after the decimal point when printed (0 prints an integer).
	Digits int
}

// Result is what a bench measured.
type Result struct {
	// Summary is for people: one line each, no trailing newline.
	Summary []string
	// Figures are for scripts, in the order they are printed.
	Figures []Figure
}

// Line returns the figures as "key=value key=value …", the last line a
// bench prints.
func (r *Result) Line() string {
	parts := make([]string, len(r.Figures))
	for i, f := range r.Figures {
		parts[i] = f.Key + "=" + strconv.FormatFloat(f.Value, 'f', f.Digits, 64)
	}
	return strings.Join(parts, " ")
}

// Figure returns the value of key and whether it is there.
func (r *Result) Figure(key string) (float64, bool) {
	for _, f := range r.Figures {
		if f.Key == key {
			return f.Value, true
		}
	}
	return 0, false
}

func (r *Result) add(key string, v float64, digits int) {
	r.Figures = append(r.Figures, Figure{Key: key, Value: v, Digits: digits})
}

func (r *Result) say(format string, args ...any) {
	r.Summary = append(r.Summary, fmt.Sprintf(format, args...))
}

// ParseLine parses a "key=value …" line into a map. It is the inverse of
// Result.Line, for scripts and tests written in Go.
func ParseLine(line string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, field := range strings.Fields(line) {
		k, v, ok := strings.Cut(field, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("parse figures: %q is not key=value", field)
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("parse figures: %s: %w", k, err)
		}
		out[k] = f
	}
	return out, nil
}

// Durations is a sample of durations.
type Durations []time.Duration

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) by the
// nearest-rank method: the smallest sample with at least p % of the samples
// at or below it. An empty sample gives 0.
func (d Durations) Percentile(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// Max returns the largest sample (0 when empty).
func (d Durations) Max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

// Min returns the smallest sample (0 when empty).
func (d Durations) Min() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Min(d)
}

// seconds and millis format durations for figures.
func seconds(d time.Duration) float64 { return d.Seconds() }
func millis(d time.Duration) float64  { return float64(d) / float64(time.Millisecond) }

// ms formats a duration in milliseconds for summaries.
func ms(d time.Duration) string { return strconv.FormatFloat(millis(d), 'f', 1, 64) + " ms" }

// verdict says whether a figure met its target, for summaries.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
