// Package calc is a tiny package with tests that pass, fail and skip.
package calc

// Add returns a+b.
func Add(a, b int) int { return a + b }
