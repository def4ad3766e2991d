package plugins

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// staleTmpAge is when a temporary file in the compilation cache is taken
// for the leftover of a crashed runner rather than one a compile is
// writing: wazero writes a compiled module to "<key>.<random>.tmp" and
// renames it to "<key>" within seconds.
const staleTmpAge = 24 * time.Hour

// cacheFile is one file of wazero's on-disk compilation cache.
type cacheFile struct {
	path    string
	size    int64
	lastUse time.Time
}

// pruneCache prunes the on-disk compilation cache and logs what it did.
func (h *Host) pruneCache(ctx context.Context) {
	if h.cfg.CacheDir == "" {
		return
	}
	start := time.Now()
	removed, freed, kept, err := pruneCacheDir(h.cfg.CacheDir, h.cfg.CacheMaxAge, int64(h.cfg.CacheLimitMiB)<<20, start)
	if err != nil {
		h.logger.WarnContext(ctx, "prune plugin compilation cache", "dir", h.cfg.CacheDir, "err", err)
	}
	if removed > 0 {
		h.logger.InfoContext(ctx, "pruned plugin compilation cache", "dir", h.cfg.CacheDir, "removed", removed,
			"freed_mib", freed>>20, "kept_mib", kept>>20, "took", time.Since(start))
	}
}

// maybePruneCache prunes the on-disk cache if the last prune is older
// than cachePruneEvery and none is running.
func (h *Host) maybePruneCache() {
	h.mu.Lock()
	if h.cfg.CacheDir == "" || h.closed || h.pruning || time.Since(h.lastPrune) < cachePruneEvery {
		h.mu.Unlock()
		return
	}
	h.pruning = true
	h.mu.Unlock()
	h.pruneCache(h.ctx)
	h.mu.Lock()
	h.pruning = false
	h.lastPrune = time.Now()
	h.mu.Unlock()
}

// pruneCacheDir deletes from the compilation cache under dir (the
// version subdirectories cacheDir and wazero make, and those of earlier
// versions) the compiled modules last used more than maxAge before now,
// then the least recently used ones until the rest take at most limit
// bytes. "Used" is the later of the file's modification and access times
// (wazero never rewrites an entry; with relatime the kernel updates the
// access time of a file read at most daily, enough for days of maxAge).
// Only files named as wazero names them are touched: "<64 hex digits>",
// and its temporary "<64 hex digits>.<digits>.tmp", which is deleted only
// when older than staleTmpAge (a compile may be writing it). It returns
// what it removed and kept, in files and bytes.
func pruneCacheDir(dir string, maxAge time.Duration, limit int64, now time.Time) (removed int, freed, kept int64, err error) {
	var files []cacheFile
	var errs []error
	remove := func(f cacheFile) {
		if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			kept += f.size
			return
		}
		removed++
		freed += f.size
	}
	walkErr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir {
				errs = append(errs, err)
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		name := d.Name()
		tmp := false
		if key, rest, ok := strings.Cut(name, "."); ok {
			digits, ok := strings.CutSuffix(rest, ".tmp")
			if !ok || !isCacheKey(key) || !isDigits(digits) {
				return nil
			}
			tmp = true
		} else if !isCacheKey(name) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		f := cacheFile{path: p, size: fi.Size(), lastUse: fi.ModTime()}
		if tmp {
			if now.Sub(fi.ModTime()) > staleTmpAge {
				remove(f)
			} else {
				kept += f.size
			}
			return nil
		}
		if at := accessTime(fi); at.After(f.lastUse) {
			f.lastUse = at
		}
		files = append(files, f)
		kept += f.size
		return nil
	})
	if walkErr != nil {
		errs = append(errs, walkErr)
	}
	slices.SortFunc(files, func(a, b cacheFile) int { return a.lastUse.Compare(b.lastUse) })
	for _, f := range files {
		if now.Sub(f.lastUse) <= maxAge && kept <= limit {
			break // the rest are newer still
		}
		kept -= f.size
		remove(f)
	}
	return removed, freed, kept, errors.Join(errs...)
}

// isCacheKey reports whether s names a wazero cache entry: a sha256 in
// lower-case hex.
func isCacheKey(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
