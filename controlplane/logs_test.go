package controlplane

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/pontus-ci/pontus/controlplane/store"
	"github.com/pontus-ci/pontus/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// logStores runs f against both log backends: files, and PostgreSQL on a
// server from internal/pgtest (skipped, saying why, without PostgreSQL).
func logStores(t *testing.T, max int64, f func(t *testing.T, l *logStore)) {
	t.Run("files", func(t *testing.T) { f(t, fileLogStore(t.TempDir(), max, false)) })
	t.Run("postgres", func(t *testing.T) { f(t, pgLogStore(openPostgres(t), max)) })
}

func openPostgres(t testing.TB) *store.Postgres {
	t.Helper()
	st, err := store.OpenPostgres(context.Background(), pgtest.Shared(t).NewDatabase(t), store.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestLogCapWritesMarkerOnce(t *testing.T) {
	logStores(t, 100, func(t *testing.T, l *logStore) {
		chunk := bytes.Repeat([]byte("x"), 60)
		trunc, err := l.append(1, 1, 0, chunk, false)
		if err != nil || trunc {
			t.Fatalf("first chunk: %v %v", trunc, err)
		}
		trunc, err = l.append(1, 1, 60, chunk, trunc)
		if err != nil || !trunc {
			t.Fatalf("second chunk: %v %v", trunc, err)
		}
		if trunc, err = l.append(1, 1, 120, chunk, trunc); err != nil || !trunc {
			t.Fatalf("third chunk: %v %v", trunc, err)
		}
		got, err := l.readAll(1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(got, bytes.Repeat([]byte("x"), 100)) || strings.Count(string(got), "log truncated") != 1 {
			t.Fatalf("capped log: %q", got)
		}
		if n, err := l.size(1, 1); err != nil || n != int64(len(got)) {
			t.Fatalf("size %d (%v), stored %d bytes", n, err, len(got))
		}
	})
}

// Reads at any offset and length see the appended bytes in order; other
// attempts and builds are separate; remove deletes every attempt.
func TestLogReadsAndRemove(t *testing.T) {
	logStores(t, 1<<20, func(t *testing.T, l *logStore) {
		var want []byte
		for i, s := range []string{"one\n", "two two\n", "three three three\n"} {
			if _, err := l.append(7, 1, int64(len(want)), []byte(s), false); err != nil {
				t.Fatal(i, err)
			}
			want = append(want, s...)
		}
		if _, err := l.append(7, 2, 0, []byte("second attempt"), false); err != nil {
			t.Fatal(err)
		}
		if _, err := l.append(8, 1, 0, []byte("other build"), false); err != nil {
			t.Fatal(err)
		}
		for off := 0; off <= len(want); off++ {
			for _, n := range []int{1, 3, 5, 100} {
				got, err := l.read(7, 1, int64(off), n)
				if err != nil {
					t.Fatal(err)
				}
				if exp := want[off:min(len(want), off+n)]; !bytes.Equal(got, exp) {
					t.Fatalf("read(%d, %d) = %q, want %q", off, n, got, exp)
				}
			}
		}
		if got, _ := l.read(9, 1, 0, 10); len(got) != 0 {
			t.Fatalf("missing log read %q", got)
		}
		if n, _ := l.size(9, 1); n != 0 {
			t.Fatalf("missing log has size %d", n)
		}
		if err := l.remove(7); err != nil {
			t.Fatal(err)
		}
		for _, a := range []int32{1, 2} {
			if got, _ := l.readAll(7, a); len(got) != 0 {
				t.Fatalf("attempt %d after remove: %q", a, got)
			}
		}
		if got, _ := l.readAll(8, 1); string(got) != "other build" {
			t.Fatalf("another build's log after remove: %q", got)
		}
	})
}

// BenchmarkAppendLog is one runner log chunk reaching the store.
func BenchmarkAppendLog(b *testing.B) {
	b.Run("files", func(b *testing.B) { benchAppendLog(b, fileLogStore(b.TempDir(), 1<<40, false)) })
	b.Run("postgres", func(b *testing.B) { benchAppendLog(b, pgLogStore(openPostgres(b), 1<<40)) })
}

func benchAppendLog(b *testing.B, l *logStore) {
	chunk := bytes.Repeat([]byte("a line of test output\n"), 200) // ~4 KiB
	b.SetBytes(int64(len(chunk)))
	off := int64(0)
	for b.Loop() {
		if _, err := l.append(1, 1, off, chunk, false); err != nil {
			b.Fatal(err)
		}
		off += int64(len(chunk))
	}
}
