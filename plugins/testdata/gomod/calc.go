// Package calc is a tiny Go package whose tests the plugin host compiles for
// wasip1 with CompileGoTests and runs in the sandbox.
package calc

// Add returns a+b.
func Add(a, b int) int { return a + b }

// Fib is deliberately slow: the CPU-heavy benchmark runs it.
func Fib(n int) int {
	if n < 2 {
		return n
	}
	return Fib(n-1) + Fib(n-2)
}
