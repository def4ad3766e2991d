package web

import (
	"fmt"
	"testing"
	"time"
)

// The sign-in bucket holds perMinute attempts, refills at perMinute a
// minute, is kept per address, and forgets addresses beyond maxBuckets.
func TestSigninLimiterRefills(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := newSigninLimiter(6)
	l.now = func() time.Time { return now }
	for i := range 6 {
		if ok, _ := l.allow("192.0.2.1"); !ok {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	ok, wait := l.allow("192.0.2.1")
	if ok || wait <= 0 || wait > 10*time.Second {
		t.Fatalf("7th attempt: allowed %v, wait %s; want refused with a wait up to 10s", ok, wait)
	}
	if ok, _ := l.allow("192.0.2.2"); !ok {
		t.Fatal("another address was refused")
	}
	now = now.Add(10 * time.Second) // one attempt's worth
	if ok, _ := l.allow("192.0.2.1"); !ok {
		t.Fatal("refused after the bucket refilled by one")
	}
	if ok, _ := l.allow("192.0.2.1"); ok {
		t.Fatal("allowed twice after refilling by one")
	}
	for i := range 2 * maxBuckets {
		l.allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := len(l.buckets); n > maxBuckets {
		t.Fatalf("%d buckets kept, want at most %d", n, maxBuckets)
	}
	if newSigninLimiter(0) != nil {
		t.Fatal("a zero rate should mean no limiter")
	}
}
