// Package browsertest drives real headless Chromium (Debian's chromium
// package) with chromedp for Pontus's browser tests. Tests skip with a clear
// message where chromium is not installed.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ChromiumPath returns the chromium binary, or skips the test with a
// message saying how to install it.
func ChromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Skip("chromium not installed: apt-get install -y chromium")
	return ""
}

// Browser is one headless Chromium with a fresh profile, closed at cleanup.
type Browser struct {
	Ctx context.Context

	mu         sync.Mutex
	exceptions []string // uncaught JS exceptions
}

// New starts headless Chromium with the flags this machine needs.
func New(t testing.TB) *Browser {
	t.Helper()
	path := ChromiumPath(t)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	b := &Browser{}
	ctx, cancel := chromedp.NewContext(allocCtx,
		chromedp.WithErrorf(func(string, ...any) {}),
		chromedp.WithListener(func(ev any) {
			if e, ok := ev.(*runtime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
				d := e.ExceptionDetails
				msg := fmt.Sprintf("%s at %s:%d:%d", d.Text, d.URL, d.LineNumber+1, d.ColumnNumber+1)
				if d.Exception != nil {
					msg += ": " + d.Exception.Description
				}
				b.mu.Lock()
				b.exceptions = append(b.exceptions, msg)
				b.mu.Unlock()
			}
		}))
	// Cleanups run last-in first-out: the browser closes before the test
	// server shuts down and before its profile directory is removed.
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b.Ctx = ctx
	if err := chromedp.Do(ctx); err != nil { // start the browser
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// Run runs chromedp actions with a 30 s deadline.
func (b *Browser) Run(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// Eval evaluates a JS expression in the page and decodes its value.
func Eval[T any](t testing.TB, b *Browser, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// Exec runs a JS statement in the page.
func (b *Browser) Exec(t testing.TB, js string) {
	t.Helper()
	Eval[chromedp.Void](t, b, js)
}

// WaitJS waits until the JS expression cond is true; on timeout it fails
// with what the JS expression describe says about the page.
func (b *Browser) WaitJS(t testing.TB, cond, describe string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if Eval[bool](t, b, "!!("+cond+")") {
			return
		}
		if time.Now().After(deadline) {
			last := Eval[string](t, b, "String("+describe+")")
			t.Fatalf("timed out waiting for %s; last state: %s", cond, last)
		}
		select {
		case <-tick.C:
		case <-b.Ctx.Done():
			t.Fatalf("waiting for %s: %v", cond, b.Ctx.Err())
		}
	}
}

// Screenshot saves a full-page PNG at path.
func (b *Browser) Screenshot(t testing.TB, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("write screenshot: %v", err)
	}
	t.Logf("screenshot: %s", path)
}

// NoExceptions fails the test for every uncaught JS exception seen.
func (b *Browser) NoExceptions(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.exceptions {
		t.Errorf("uncaught JS exception: %s", e)
	}
}
