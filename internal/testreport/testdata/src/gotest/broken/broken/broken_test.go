package broken

import "testing"

func TestBroken(t *testing.T) {
	x := undefinedThing
	_ = y
}
