package plugins

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// wasmImport is one entry of a module's import section.
type wasmImport struct {
	Module, Name string
	Kind         string // "function", "table", "memory", "global", "tag"
}

// checkImports refuses, before the (slow) compile, a module that imports
// from anything but wasi_snapshot_preview1, naming the first such import.
// It also recognises WebAssembly components, which wazero cannot run.
// Bytes it cannot parse are left for the compiler to reject.
func checkImports(wasm []byte) error {
	imports, err := parseImports(wasm)
	if err != nil {
		if errors.Is(err, errComponent) {
			return err
		}
		return nil
	}
	for _, imp := range imports {
		if imp.Module != wasi_snapshot_preview1.ModuleName {
			return fmt.Errorf("module imports %s %q from module %q: a plugin may import only from %s (it must be a WASI preview-1 command module)",
				imp.Kind, imp.Name, imp.Module, wasi_snapshot_preview1.ModuleName)
		}
	}
	return nil
}

var errComponent = errors.New("module is a WebAssembly component (WASI 0.2); plugins must be WASI preview-1 core modules (e.g. GOOS=wasip1 GOARCH=wasm go build)")

// parseImports reads the import section of a core wasm module.
func parseImports(b []byte) ([]wasmImport, error) {
	if len(b) < 8 || !bytes.Equal(b[:4], []byte("\x00asm")) {
		return nil, errors.New("not a wasm module (bad magic)")
	}
	switch {
	case bytes.Equal(b[4:8], []byte{1, 0, 0, 0}):
	case b[6] == 1 && b[7] == 0: // layer 1: a component
		return nil, errComponent
	default:
		return nil, fmt.Errorf("unknown wasm version % x", b[4:8])
	}
	r := &wasmReader{b: b[8:]}
	for !r.done() {
		id := r.byte()
		size := r.u32()
		body := r.bytes(int(size))
		if r.err != nil {
			return nil, r.err
		}
		if id != 2 {
			continue
		}
		s := &wasmReader{b: body}
		n := s.u32()
		var out []wasmImport
		for i := uint32(0); i < n && s.err == nil; i++ {
			imp := wasmImport{Module: s.name(), Name: s.name()}
			switch kind := s.byte(); kind {
			case 0x00:
				imp.Kind = "function"
				s.u32()
			case 0x01:
				imp.Kind = "table"
				s.byte()
				s.limits()
			case 0x02:
				imp.Kind = "memory"
				s.limits()
			case 0x03:
				imp.Kind = "global"
				s.byte()
				s.byte()
			case 0x04:
				imp.Kind = "tag"
				s.byte()
				s.u32()
			default:
				return nil, fmt.Errorf("unknown import kind %#x", kind)
			}
			out = append(out, imp)
		}
		return out, s.err
	}
	return nil, nil
}

// wasmReader decodes the parts of the wasm binary format parseImports
// needs. The first error sticks; reads after it return zero values.
type wasmReader struct {
	b   []byte
	err error
}

var errTruncated = errors.New("truncated wasm module")

func (r *wasmReader) done() bool { return r.err != nil || len(r.b) == 0 }

func (r *wasmReader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errTruncated
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// u64 reads an unsigned LEB128 number.
func (r *wasmReader) u64() uint64 {
	var v uint64
	for shift := 0; shift < 64; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errors.New("LEB128 number too long")
	return 0
}

func (r *wasmReader) u32() uint32 {
	v := r.u64()
	if v > 1<<32-1 {
		r.err = errors.New("u32 out of range")
	}
	return uint32(v)
}

func (r *wasmReader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errTruncated
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *wasmReader) name() string { return string(r.bytes(int(r.u32()))) }

func (r *wasmReader) limits() {
	flags := r.byte()
	r.u64()
	if flags&1 != 0 {
		r.u64()
	}
}
