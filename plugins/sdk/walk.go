package sdk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// DefaultMaxSize is the largest file Walk reads unless told otherwise.
const DefaultMaxSize = 8 << 20

// WalkOptions tunes Walk. The zero value skips .git, binary files, symbolic
// links and files larger than DefaultMaxSize.
type WalkOptions struct {
	// SkipDirs are directory names never entered, wherever they are
	// (".git" is always skipped): e.g. "node_modules", "vendor".
	SkipDirs []string
	// MaxSize skips files larger than this many bytes; 0 means
	// DefaultMaxSize, a negative value means no limit.
	MaxSize int64
	// IncludeBinary also passes files IsBinary reports as binary.
	IncludeBinary bool
	// Match, when set, picks the files to read by their slash-separated
	// path relative to the root; the others are not even opened.
	Match func(path string) bool
}

// WalkFiles calls fn for every text file under root, in lexical order, with
// its slash-separated path relative to root and its contents. It uses the
// defaults of WalkOptions. Files it cannot read do not stop the walk; their
// errors are returned together at the end.
func WalkFiles(root string, fn func(path string, data []byte)) error {
	return Walk(root, WalkOptions{}, fn)
}

// Walk is WalkFiles with options.
func Walk(root string, opts WalkOptions, fn func(path string, data []byte)) error {
	maxSize := opts.MaxSize
	if maxSize == 0 {
		maxSize = DefaultMaxSize
	}
	var errs []error
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			errs = append(errs, err)
			return nil
		}
		if d.IsDir() {
			if p != root && (d.Name() == ".git" || slices.Contains(opts.SkipDirs, d.Name())) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil // symbolic links, devices, sockets
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		rel = filepath.ToSlash(rel)
		if opts.Match != nil && !opts.Match(rel) {
			return nil
		}
		data, err := readFile(p, maxSize)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if data == nil || (!opts.IncludeBinary && IsBinary(data)) {
			return nil
		}
		fn(rel, data)
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk %s: %w", root, err)
	}
	return errors.Join(errs...)
}

// readFile reads p, or returns nil, nil when it is larger than maxSize
// (maxSize < 0: no limit).
func readFile(p string, maxSize int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if maxSize < 0 {
		return io.ReadAll(f)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if int64(len(data)) > maxSize {
		return nil, nil
	}
	return data, nil
}

// IsBinary reports whether data looks binary the way git decides it: a NUL
// byte in the first 8000 bytes.
func IsBinary(data []byte) bool {
	return bytes.IndexByte(data[:min(len(data), 8000)], 0) >= 0
}
