package plugins

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// wasmImport is one entry of a module's import section.
type wasmImport struct {
	Module, Name string
	Kind         string // "function", "table", "memory", "global", "tag"
}

// wasmTable is the size limits of one table a module declares.
type wasmTable struct {
	Min, Max uint64
	HasMax   bool
}

// Table bounds. wazero keeps tables on the host's heap, outside the
// guest's memory cap (8 bytes an element), and table.grow is one
// instruction: without a bound, a module of a few hundred bytes could make
// the host allocate gigabytes. Compilers size a table to the functions
// called indirectly (a 5 MB Go test binary's has about 10,000 elements);
// Go's declares no maximum and never grows it.
const (
	// maxTableElements bounds each table: a larger declared minimum or
	// maximum is refused, and a table without a maximum gets this one.
	maxTableElements = 1 << 20
	// maxTables bounds the tables of a module, so that all of them
	// together stay within 32 MiB of host memory.
	maxTables = 4
)

// checkWasm refuses, before the (slow) compile, a module that imports
// from anything but wasi_snapshot_preview1, naming the first such import,
// and one with more than maxTables tables or a table declaring more than
// maxTableElements elements. It also recognises WebAssembly components,
// which wazero cannot run. Bytes it cannot parse are left for the
// compiler to reject.
func checkWasm(wasm []byte) error {
	imports, tables, err := parseModule(wasm)
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
	if len(tables) > maxTables {
		return fmt.Errorf("module declares %d tables, more than the %d the host allows (tables live outside the memory cap)", len(tables), maxTables)
	}
	for i, t := range tables {
		if t.Min > maxTableElements || t.HasMax && t.Max > maxTableElements {
			size := t.Min
			if t.HasMax {
				size = t.Max
			}
			return fmt.Errorf("module declares table %d of up to %d elements, more than the %d the host allows (tables live outside the memory cap)", i, size, maxTableElements)
		}
	}
	return nil
}

// boundTables returns wasm with a maximum of maxTableElements given to
// each table its table section declares without one, so that table.grow
// beyond it fails in the guest (returns -1, as the specification allows)
// instead of allocating host memory. Modules it cannot parse are returned
// as they are, for the compiler to reject.
func boundTables(wasm []byte) []byte {
	if _, _, err := parseModule(wasm); err != nil || len(wasm) < 8 {
		return wasm
	}
	out := append([]byte(nil), wasm[:8]...)
	r := &wasmReader{b: wasm[8:]}
	for !r.done() {
		id := r.byte()
		body := r.bytes(int(r.u32()))
		if id == 4 {
			s := &wasmReader{b: body}
			n := s.u32()
			nb := binary.AppendUvarint(nil, uint64(n))
			for i := uint32(0); i < n && s.err == nil; i++ {
				ref := s.byte()
				t := s.limits()
				if !t.HasMax {
					t.Max, t.HasMax = maxTableElements, true
				}
				nb = append(nb, ref, 1)
				nb = binary.AppendUvarint(nb, t.Min)
				nb = binary.AppendUvarint(nb, t.Max)
			}
			if s.err != nil {
				return wasm
			}
			body = append(nb, s.b...)
		}
		out = append(out, id)
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	if r.err != nil {
		return wasm
	}
	return out
}

var errComponent = errors.New("module is a WebAssembly component (WASI 0.2); plugins must be WASI preview-1 core modules (e.g. GOOS=wasip1 GOARCH=wasm go build)")

// parseModule reads the imports and the tables (imported ones first, as
// they are numbered) of a core wasm module.
func parseModule(b []byte) (imports []wasmImport, tables []wasmTable, err error) {
	if len(b) < 8 || !bytes.Equal(b[:4], []byte("\x00asm")) {
		return nil, nil, errors.New("not a wasm module (bad magic)")
	}
	switch {
	case bytes.Equal(b[4:8], []byte{1, 0, 0, 0}):
	case b[6] == 1 && b[7] == 0: // layer 1: a component
		return nil, nil, errComponent
	default:
		return nil, nil, fmt.Errorf("unknown wasm version % x", b[4:8])
	}
	r := &wasmReader{b: b[8:]}
	for !r.done() {
		id := r.byte()
		size := r.u32()
		body := r.bytes(int(size))
		if r.err != nil {
			return nil, nil, r.err
		}
		switch id {
		case 2:
			imports, tables, err = parseImports(body, tables)
			if err != nil {
				return nil, nil, err
			}
		case 4:
			s := &wasmReader{b: body}
			n := s.u32()
			for i := uint32(0); i < n && s.err == nil; i++ {
				s.byte() // reference type
				tables = append(tables, s.limits())
			}
			if s.err != nil {
				return nil, nil, s.err
			}
		}
	}
	return imports, tables, nil
}

// parseImports reads the body of an import section, appending the
// imported tables to tables.
func parseImports(body []byte, tables []wasmTable) ([]wasmImport, []wasmTable, error) {
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
			tables = append(tables, s.limits())
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
			return nil, nil, fmt.Errorf("unknown import kind %#x", kind)
		}
		out = append(out, imp)
	}
	return out, tables, s.err
}

// wasmReader decodes the parts of the wasm binary format parseModule
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

func (r *wasmReader) limits() wasmTable {
	var l wasmTable
	flags := r.byte()
	l.Min = r.u64()
	if flags&1 != 0 {
		l.Max, l.HasMax = r.u64(), true
	}
	return l
}
