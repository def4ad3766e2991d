package observerd

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long the watcher waits after the first event of a burst
// before asking for the refs to be re-read: git updates a ref by writing
// "<ref>.lock" and renaming it, and a commit, rebase or push touches
// several files in a row.
const debounce = 5 * time.Millisecond

// watcher turns file-system events on a local repository's refs into
// wake-ups. It only reads: inotify (or the platform's equivalent) never
// changes the watched files.
type watcher struct {
	fs     *fsnotify.Watcher
	repo   *repository
	logger *slog.Logger
	// wake receives a value (without blocking) after a relevant burst.
	wake chan<- struct{}
}

// newWatcher watches the files that hold the branches of repo: HEAD in the
// git directory, packed-refs in the common directory, refs/heads/** (and
// reftable/ for repositories in that format).
func newWatcher(repo *repository, logger *slog.Logger, wake chan<- struct{}) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{fs: fw, repo: repo, logger: logger, wake: wake}
	dirs := []string{repo.gitDir}
	if repo.commonDir != repo.gitDir {
		dirs = append(dirs, repo.commonDir)
	}
	for _, d := range dirs {
		if err := fw.Add(d); err != nil {
			fw.Close()
			return nil, err
		}
	}
	for _, d := range []string{w.refsDir(), w.reftableDir()} {
		if err := w.addTree(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			fw.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *watcher) refsDir() string     { return filepath.Join(w.repo.commonDir, "refs") }
func (w *watcher) headsDir() string    { return filepath.Join(w.repo.commonDir, "refs", "heads") }
func (w *watcher) reftableDir() string { return filepath.Join(w.repo.commonDir, "reftable") }

// addTree watches dir and, below refs/, every directory under refs/heads
// (fsnotify watches are not recursive; "release/1.2" lives in a
// subdirectory).
func (w *watcher) addTree(dir string) error {
	if dir == w.refsDir() {
		if err := w.fs.Add(dir); err != nil {
			return err
		}
		dir = w.headsDir()
	}
	if !w.inHeads(dir) {
		return w.fs.Add(dir)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if d.IsDir() {
			return w.fs.Add(p)
		}
		return nil
	})
}

// inHeads reports whether p is refs/heads or below it.
func (w *watcher) inHeads(p string) bool {
	heads := w.headsDir()
	return p == heads || strings.HasPrefix(p, heads+string(filepath.Separator))
}

// relevant reports whether an event may have changed a branch or HEAD, and
// watches directories that appear under refs/heads.
func (w *watcher) relevant(ev fsnotify.Event) bool {
	name := ev.Name
	if strings.HasSuffix(name, ".lock") {
		return false // the rename that follows is what counts
	}
	dir, base := filepath.Dir(name), filepath.Base(name)
	switch {
	case dir == w.repo.gitDir || dir == w.repo.commonDir:
		switch base {
		case "HEAD", "packed-refs":
			return true
		case "refs", "reftable":
			if ev.Has(fsnotify.Create) {
				w.addNew(name)
				return true
			}
		}
		return false
	case name == w.headsDir() && ev.Has(fsnotify.Create):
		w.addNew(name)
		return true
	case w.inHeads(name):
		if ev.Has(fsnotify.Create) {
			if fi, err := os.Lstat(name); err == nil && fi.IsDir() {
				w.addNew(name)
			}
		}
		return true
	case strings.HasPrefix(name, w.reftableDir()+string(filepath.Separator)):
		return true
	}
	return false
}

// addNew watches a directory that was just created. Files created in it
// before the watch took hold are still seen: the re-read this event
// triggers happens after the watch is in place.
func (w *watcher) addNew(dir string) {
	if err := w.addTree(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.logger.Warn("cannot watch new ref directory; relying on polling", "dir", dir, "err", err)
	}
}

// run delivers wake-ups until ctx is done, then closes the watcher.
func (w *watcher) run(ctx context.Context) {
	defer w.fs.Close()
	var (
		timer *time.Timer
		fire  <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if !w.relevant(ev) || fire != nil {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(debounce)
			} else {
				timer.Reset(debounce)
			}
			fire = timer.C
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			// An overflow means events were lost: re-read everything.
			w.logger.Warn("file watcher error; re-reading refs", "err", err)
			w.notify()
		case <-fire:
			fire = nil
			w.notify()
		}
	}
}

func (w *watcher) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}
