package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/pontus-ci/pontus/internal/testrun"
	"github.com/pontus-ci/pontus/plugins"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// WasmConfig configures Wasm.
type WasmConfig struct {
	// Runs is how many warm runs are timed after the first (cold) one.
	Runs int
	// TempDir is where the bench's temporary directory goes ("" = the
	// system's).
	TempDir string
}

// DefaultWasmConfig returns 100 warm runs.
func DefaultWasmConfig() WasmConfig { return WasmConfig{Runs: 100} }

// Validate checks the configuration, naming the flag that is wrong.
func (c *WasmConfig) Validate() error {
	if c.Runs < 1 || c.Runs > 100000 {
		return fmt.Errorf("--runs: must be between 1 and 100000, got %d", c.Runs)
	}
	return nil
}

// tapOutput is what the tiny plugin prints.
const tapOutput = "TAP version 14\n1..1\nok 1 - warm start\n"

// Wasm measures the warm start of a tiny TAP test plugin in the plugins
// host: the whole Host.Run of a module already compiled (read and hash the
// module, open the checkout, instantiate with the sandbox's mounts, run,
// parse the TAP), first once cold (compiling) and then Runs times warm.
func Wasm(ctx context.Context, cfg WasmConfig, logger *slog.Logger) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(cfg.TempDir, "pontus-bench-wasm-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	checkout := filepath.Join(tmp, "checkout")
	if err := os.MkdirAll(filepath.Join(checkout, "tests"), 0o755); err != nil {
		return nil, fmt.Errorf("create checkout: %w", err)
	}
	module := filepath.Join(tmp, "tap.wasm")
	if err := os.WriteFile(module, tapModule(tapOutput), 0o644); err != nil {
		return nil, fmt.Errorf("write plugin: %w", err)
	}
	host, err := plugins.NewHost(ctx, plugins.HostConfig{}, daemonLogger(logger, "plugins"))
	if err != nil {
		return nil, err
	}
	defer host.Close(context.WithoutCancel(ctx))

	run := func() (time.Duration, error) {
		var out bytes.Buffer
		spec := testrun.Spec{
			Dir:     checkout,
			Plugin:  &testrun.Plugin{Name: "tap-tiny", Module: module, MemoryLimitMiB: 1},
			Output:  &out,
			Timeout: 30 * time.Second,
		}
		start := time.Now()
		res := host.Run(ctx, spec)
		took := time.Since(start)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if res.Status != testrun.Passed {
			return 0, fmt.Errorf("tiny plugin ended %s (%s): %s", res.Status, res.Reason, lastLines(out.String(), 5))
		}
		if len(res.Tests) != 1 || res.Tests[0].GetOutcome() != pontusv1.TestOutcome_TEST_OUTCOME_PASSED {
			return 0, fmt.Errorf("tiny plugin: want 1 passed test parsed from its TAP, got %d: %s", len(res.Tests), out.String())
		}
		return took, nil
	}
	cold, err := run()
	if err != nil {
		return nil, fmt.Errorf("cold run: %w", err)
	}
	logger.Info("wasm: cold run done; timing warm runs", "cold", cold, "runs", cfg.Runs)
	warm := make(Durations, 0, cfg.Runs)
	for i := range cfg.Runs {
		took, err := run()
		if err != nil {
			return nil, fmt.Errorf("warm run %d: %w", i+1, err)
		}
		warm = append(warm, took)
	}
	p50 := warm.Percentile(50)
	r := &Result{}
	r.say("wasm: a tiny TAP plugin (%d-byte module, 1 test) in the plugins host, whole Host.Run", len(tapModule(tapOutput)))
	r.say("  cold (compiles): %s; warm over %d runs: min %s  p50 %s  p99 %s  max %s",
		ms(cold), len(warm), ms(warm.Min()), ms(p50), ms(warm.Percentile(99)), ms(warm.Max()))
	r.add("warm_start_ms", millis(p50), 3)
	r.add("cold_start_ms", millis(cold), 3)
	return r, nil
}

// tapModule assembles a WASI preview-1 command module that writes out to
// stdout with one fd_write and returns (exit 0). It is the binary form of:
//
//	(module
//	  (import "wasi_snapshot_preview1" "fd_write"
//	    (func $fd_write (param i32 i32 i32 i32) (result i32)))
//	  (memory (export "memory") 1)
//	  (data (i32.const 16) "<out>")
//	  (func (export "_start")
//	    (i32.store (i32.const 0) (i32.const 16))         ;; iovec.buf
//	    (i32.store (i32.const 4) (i32.const <len out>))  ;; iovec.len
//	    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
//
// Assembling it here keeps a binary out of the repository.
func tapModule(out string) []byte {
	const (
		i32      = 0x7f
		i32Const = 0x41
		i32Store = 0x36
		call     = 0x10
		drop     = 0x1a
		end      = 0x0b
	)
	const dataAt = 16
	section := func(id byte, content []byte) []byte {
		return append(append([]byte{id}, uleb(uint64(len(content)))...), content...)
	}
	name := func(s string) []byte { return append(uleb(uint64(len(s))), s...) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	types := cat([]byte{2},
		[]byte{0x60, 4, i32, i32, i32, i32, 1, i32}, // fd_write
		[]byte{0x60, 0, 0})                          // _start
	imports := cat([]byte{1}, name("wasi_snapshot_preview1"), name("fd_write"), []byte{0x00, 0})
	funcs := []byte{1, 1}
	memory := []byte{1, 0x00, 1}
	exports := cat([]byte{2}, name("memory"), []byte{0x02, 0}, name("_start"), []byte{0x00, 1})
	body := cat([]byte{0}, // no locals
		[]byte{i32Const}, sleb(0), []byte{i32Const}, sleb(dataAt), []byte{i32Store, 2, 0},
		[]byte{i32Const}, sleb(4), []byte{i32Const}, sleb(int64(len(out))), []byte{i32Store, 2, 0},
		[]byte{i32Const}, sleb(1), []byte{i32Const}, sleb(0), []byte{i32Const}, sleb(1), []byte{i32Const}, sleb(8),
		[]byte{call, 0, drop, end})
	code := cat([]byte{1}, uleb(uint64(len(body))), body)
	data := cat([]byte{1, 0x00, i32Const}, sleb(dataAt), []byte{end}, name(out))

	return cat([]byte("\x00asm"), []byte{1, 0, 0, 0},
		section(1, types), section(2, imports), section(3, funcs), section(5, memory),
		section(7, exports), section(10, code), section(11, data))
}

// uleb and sleb encode LEB128 integers, unsigned and signed.
func uleb(v uint64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}

func sleb(v int64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && b&0x40 == 0) || (v == -1 && b&0x40 != 0) {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}
