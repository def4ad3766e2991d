package calc

import (
	"fmt"
	"testing"
)

func TestAdd(t *testing.T) {
	t.Log("adding 1 and 2")
	if got := Add(1, 2); got != 3 {
		t.Fatalf("Add(1, 2) = %d, want 3", got)
	}
}

func TestAddWrong(t *testing.T) {
	t.Logf("about to compare")
	if got := Add(2, 2); got != 5 {
		t.Errorf("Add(2, 2) = %d, want 5", got)
	}
}

func TestSkipped(t *testing.T) {
	t.Skip("needs a database")
}

func TestTable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		a, b, w int
	}{{"small", 1, 1, 2}, {"large", 1000, 1000, 2001}, {"skip me", 0, 0, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "skip me" {
				t.Skip("not today")
			}
			if got := Add(tc.a, tc.b); got != tc.w {
				t.Errorf("Add(%d, %d) = %d, want %d\nsecond line of the message", tc.a, tc.b, got, tc.w)
			}
		})
	}
}

func TestNested(t *testing.T) {
	t.Run("outer", func(t *testing.T) {
		t.Run("inner", func(t *testing.T) {
			t.Log("deep")
		})
	})
}

func TestPrints(t *testing.T) {
	fmt.Println("plain stdout from a test")
}

func ExampleAdd() {
	fmt.Println(Add(1, 2))
	// Output: 3
}
