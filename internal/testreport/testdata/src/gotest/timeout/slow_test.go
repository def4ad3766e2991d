package slow

import (
	"testing"
	"time"
)

func TestQuick(t *testing.T) {}

func TestSlow(t *testing.T) {
	t.Log("starting something slow")
	time.Sleep(10 * time.Second)
}
