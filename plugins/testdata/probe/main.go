//go:build wasip1

// Command probe tries one thing a sandboxed plugin must or must not be able
// to do, given by its arguments, and prints "RESULT ok ..." or
// "RESULT err ...". The host tests build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -o probe.wasm ./plugins/testdata/probe
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: probe action [args]")
		os.Exit(2)
	}
	arg := func(i int) string {
		if len(os.Args) > i+1 {
			return os.Args[i+1]
		}
		return ""
	}
	switch os.Args[1] {
	case "read":
		data, err := os.ReadFile(arg(1))
		report(firstLine(data), err)
	case "write":
		report("", os.WriteFile(arg(1), []byte("written by a plugin\n"), 0o644))
	case "mkdir":
		report("", os.Mkdir(arg(1), 0o755))
	case "symlink": // symlink target link: create, then read through it
		if err := os.Symlink(arg(1), arg(2)); err != nil {
			report("", err)
			return
		}
		data, err := os.ReadFile(arg(2))
		report(firstLine(data), err)
	case "link": // link old new, creating old first when it is in /tmp
		if strings.HasPrefix(arg(1), "/tmp/") {
			os.WriteFile(arg(1), []byte("x"), 0o644)
		}
		report("", os.Link(arg(1), arg(2)))
	case "rawopen": // path_open on the first preopen, skipping Go's path cleaning
		report("", rawOpen(arg(1)))
	case "dial":
		c, err := net.DialTimeout("tcp", arg(1), 2*time.Second)
		if err == nil {
			c.Close()
		}
		report("", err)
	case "env":
		report(strings.Join(os.Environ(), " "), nil)
	case "pwd":
		wd, err := os.Getwd()
		report(wd, err)
	case "tmp": // a scratch file in /tmp, written and read back
		f, err := os.CreateTemp("", "probe-")
		if err != nil {
			report("", err)
			return
		}
		fmt.Fprint(f, "scratch")
		f.Close()
		data, err := os.ReadFile(f.Name())
		report(string(data), err)
	case "loop":
		n := 0
		for {
			n++
			if n == -1 {
				fmt.Println(n)
			}
		}
	case "sleep":
		fmt.Println("sleeping")
		time.Sleep(time.Hour)
		report("woke up", nil)
	case "mem": // allocate and touch 8 MiB chunks until the runtime dies
		var keep [][]byte
		for i := 0; ; i++ {
			b := make([]byte, 8<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = byte(i) // make every page resident
			}
			keep = append(keep, b)
			if i%8 == 0 {
				fmt.Fprintf(os.Stderr, "allocated %d MiB\n", (i+1)*8)
			}
		}
	case "flood": // write n bytes to stdout
		n, _ := strconv.Atoi(arg(1))
		chunk := []byte(strings.Repeat("flood flood flood flood flood flood flood flood flood flood flood!\n", 1024))
		for n > 0 {
			k := min(n, len(chunk))
			os.Stdout.Write(chunk[:k])
			n -= k
		}
	case "openmany": // open path up to n times, keeping the files open
		n, _ := strconv.Atoi(arg(2))
		var files []*os.File
		var openErr error
		for range n {
			f, err := os.Open(arg(1))
			if err != nil {
				openErr = err
				break
			}
			files = append(files, f)
		}
		for _, f := range files {
			f.Close()
		}
		_, reopenErr := os.ReadFile(arg(1)) // with the files closed again
		report(fmt.Sprintf("opened=%d err=%v reopen=%v", len(files), openErr, reopenErr), nil)
	case "tmpfill": // fill /tmp in 1 MiB writes, then truncate, remove, write again
		chunk := make([]byte, 1<<20)
		f, err := os.Create("/tmp/fill")
		if err != nil {
			report("", err)
			return
		}
		written, werr := 0, error(nil)
		for written < 64 { // at most 64 MiB
			if _, werr = f.Write(chunk); werr != nil {
				break
			}
			written++
		}
		_, pwErr := f.WriteAt([]byte("x"), 1<<40)
		f.Close()
		truncErr := os.Truncate("/tmp/fill", 1<<40)
		os.Remove("/tmp/fill")
		againErr := os.WriteFile("/tmp/again", chunk, 0o644)
		report(fmt.Sprintf("written=%dMiB err=%v pwrite=%v truncate=%v again=%v", written, werr, pwErr, truncErr, againErr), nil)
	case "mkmany": // create files in /tmp/d until n or an error, then remove one and create again
		n, _ := strconv.Atoi(arg(1))
		if err := os.Mkdir("/tmp/d", 0o755); err != nil {
			report("", err)
			return
		}
		created, cerr := 0, error(nil)
		for created < n {
			if cerr = os.WriteFile(fmt.Sprintf("/tmp/d/%d", created), nil, 0o644); cerr != nil {
				break
			}
			created++
		}
		os.Remove("/tmp/d/0")
		againErr := os.Mkdir("/tmp/d/again", 0o755)
		report(fmt.Sprintf("created=%d err=%v again=%v", created, cerr, againErr), nil)
	case "exit":
		code, _ := strconv.Atoi(arg(1))
		fmt.Println("exiting with", code)
		os.Exit(code)
	default:
		fmt.Println("unknown action", os.Args[1])
		os.Exit(2)
	}
}

func report(detail string, err error) {
	if err != nil {
		fmt.Printf("RESULT err %v\n", err)
		return
	}
	fmt.Printf("RESULT ok %s\n", detail)
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

//go:wasmimport wasi_snapshot_preview1 path_open
//go:noescape
func pathOpen(fd int32, dirflags int32, path unsafe.Pointer, pathLen int32, oflags int32, rightsBase, rightsInheriting int64, fdflags int32, newfd unsafe.Pointer) int32

func rawOpen(p string) error {
	b := []byte(p)
	var fd int32
	if errno := pathOpen(3, 1, unsafe.Pointer(&b[0]), int32(len(b)), 0, 0x1fffffff, 0x1fffffff, 0, unsafe.Pointer(&fd)); errno != 0 {
		return fmt.Errorf("path_open errno %d", errno)
	}
	return nil
}
