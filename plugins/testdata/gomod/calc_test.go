package calc

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestAdd(t *testing.T) {
	if got := Add(2, 3); got != 5 {
		t.Errorf("Add(2, 3) = %d, want 5", got)
	}
}

func TestTestdataAndTempDir(t *testing.T) {
	data, err := os.ReadFile("testdata/input.txt")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "copy")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFailsOnPurpose(t *testing.T) {
	t.Errorf("Add(1, 1) = %d, want 3 (this test fails on purpose)", Add(1, 1))
}

// TestFib is the CPU-heavy test of the benchmarks; it runs only when FIB_N
// is set.
func TestFib(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("FIB_N"))
	if err != nil {
		t.Skip("set FIB_N to run")
	}
	t.Logf("Fib(%d) = %d", n, Fib(n))
}
