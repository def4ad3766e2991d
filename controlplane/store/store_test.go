package store

import (
	"cmp"
	"context"
	"crypto/sha1"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/internal/pgtest"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// opener opens the same store each time it is called (closed when the
// test ends, or earlier by the test).
type opener func(t testing.TB) Store

// stores runs f against every Store implementation: SQLite always, and
// PostgreSQL on a server from internal/pgtest (skipped, saying why, when
// PostgreSQL is not installed). Every store test goes through it, so
// both stores meet the same contract.
func stores(t *testing.T, f func(t *testing.T, open opener)) {
	t.Run("sqlite", func(t *testing.T) { f(t, sqliteOpener(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, postgresOpener(t)) })
}

func sqliteOpener(t testing.TB) opener {
	path := filepath.Join(t.TempDir(), "pontus.db")
	return func(t testing.TB) Store {
		t.Helper()
		s, err := OpenSQLite(path, SQLiteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func postgresOpener(t testing.TB) opener {
	url := pgtest.Shared(t).NewDatabase(t)
	return func(t testing.TB) Store {
		t.Helper()
		s, err := OpenPostgres(context.Background(), url, PostgresOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func build(id int64, status pontusv1.BuildStatus) *pontusv1.Build {
	return &pontusv1.Build{Id: id, Repo: "/r", Branch: "main", Commit: fmt.Sprintf("%040x", id), Status: status}
}

func TestWritesAreDurableAndOrdered(t *testing.T) { stores(t, testWritesAreDurableAndOrdered) }

func testWritesAreDurableAndOrdered(t *testing.T, open opener) {
	s := open(t)
	ctx := context.Background()
	// The same build written twice in one batch: the later write wins.
	c := s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)},
		Mutation{PutBuild: build(2, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)},
		Mutation{PutCursor: &Cursor{Repo: "/r", Branch: "main", Commit: "c2"}})
	c2 := s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_PASSED)},
		Mutation{PutRunner: &pontusv1.Runner{Id: "r-1", Name: "one"}})
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c2.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t)
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Live) != 1 || st.Live[0].Id != 2 || st.NextID != 3 {
		t.Fatalf("live %v next %d", st.Live, st.NextID)
	}
	if len(st.Unreported) != 1 || st.Unreported[0].Status != pontusv1.BuildStatus_BUILD_STATUS_PASSED {
		t.Fatalf("unreported %v", st.Unreported)
	}
	if len(st.Runners) != 1 || len(st.Cursors) != 1 || st.Cursors[0].Commit != "c2" {
		t.Fatalf("runners %v cursors %v", st.Runners, st.Cursors)
	}
	if err := s.Enqueue(Mutation{Reported: 1}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ = s.Load(ctx)
	if len(st.Unreported) != 0 {
		t.Fatalf("reported build still unreported: %v", st.Unreported)
	}
	b, err := s.LatestBuild(ctx, "/r", fmt.Sprintf("%040x", 1))
	if err != nil || b.Id != 1 {
		t.Fatalf("latest build: %v %v", b, err)
	}
	if _, err := s.GetBuild(ctx, 99); err != ErrNotFound {
		t.Fatalf("missing build: %v", err)
	}
}

// Concurrent writers share transactions (group commit); every commit is
// acknowledged and every write is there afterwards.
func TestGroupCommitHammer(t *testing.T) { stores(t, testGroupCommitHammer) }

func testGroupCommitHammer(t *testing.T, open opener) {
	s := open(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 50 {
				id := int64(w*1000 + i + 1)
				if err := s.Enqueue(Mutation{PutBuild: build(id, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Live) != 16*50 {
		t.Fatalf("%d builds stored, want %d", len(st.Live), 16*50)
	}
}

// BenchmarkClaimComplete is the store's share of one job: the lease and the
// result, each a durable write, from 32 concurrent callers as with 32 runners.
func BenchmarkClaimComplete(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchClaimComplete(b, sqliteOpener(b)(b)) })
	b.Run("postgres", func(b *testing.B) { benchClaimComplete(b, postgresOpener(b)(b)) })
}

func benchClaimComplete(b *testing.B, s Store) {
	ctx := context.Background()
	var next sync.Mutex
	id := int64(0)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			next.Lock()
			id++
			my := id
			next.Unlock()
			if err := s.Enqueue(Mutation{PutBuild: build(my, pontusv1.BuildStatus_BUILD_STATUS_LEASED)}).Wait(ctx); err != nil {
				b.Fatal(err)
			}
			if err := s.Enqueue(Mutation{PutBuild: build(my, pontusv1.BuildStatus_BUILD_STATUS_PASSED)}).Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Reusable finds the newest PASSED or FAILED build that ran of a tree with
// the same labels and retries, in the same repository only.
func TestReusable(t *testing.T) { stores(t, testReusable) }

func testReusable(t *testing.T, open opener) {
	s := open(t)
	ctx := t.Context()
	tree := fmt.Sprintf("%040x", 0xabc)
	mk := func(id int64, repo string, status pontusv1.BuildStatus, labels []string, retries int32, reused int64) *pontusv1.Build {
		b := build(id, status)
		b.Repo, b.Tree, b.Labels, b.ReusedBuild = repo, tree, labels, reused
		b.Settings = &pontusv1.BuildSettings{Retries: retries, Shards: 1}
		return b
	}
	const (
		passed = pontusv1.BuildStatus_BUILD_STATUS_PASSED
		failed = pontusv1.BuildStatus_BUILD_STATUS_FAILED
	)
	muts := []Mutation{
		{PutBuild: mk(1, "/r", passed, []string{"linux", "go"}, 0, 0)},
		{PutBuild: mk(2, "/r", failed, []string{"linux"}, 0, 0)},                                        // other labels
		{PutBuild: mk(3, "/r", passed, []string{"go", "linux"}, 1, 0)},                                  // other retries
		{PutBuild: mk(4, "/other", failed, []string{"go", "linux"}, 0, 0)},                              // other repo
		{PutBuild: mk(5, "/r", pontusv1.BuildStatus_BUILD_STATUS_ERROR, []string{"go", "linux"}, 0, 0)}, // no verdict
		{PutBuild: mk(6, "/r", passed, []string{"go", "linux"}, 0, 1)},                                  // itself reused
		{PutBuild: mk(7, "/r", pontusv1.BuildStatus_BUILD_STATUS_QUEUED, []string{"go", "linux"}, 0, 0)},
	}
	if err := s.Enqueue(muts...).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	key := ReuseKey(tree, []string{"linux", "go", "linux"}, 0)
	b, err := s.Reusable(ctx, "/r", key)
	if err != nil || b.Id != 1 {
		t.Fatalf("Reusable = %v, %v; want build 1", b, err)
	}
	// A newer verdict of the same key wins.
	b8 := mk(8, "/r", failed, []string{"go", "linux"}, 0, 0)
	if err := s.Enqueue(Mutation{PutBuild: b8}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Reusable(ctx, "/r", key); err != nil || b.Id != 8 {
		t.Fatalf("Reusable = %v, %v; want build 8", b, err)
	}
	if b, err := s.Reusable(ctx, "/r", ReuseKey(tree, nil, 0)); err != ErrNotFound {
		t.Fatalf("no labels: Reusable = %v, %v; want not found", b, err)
	}
	if b, err := s.Reusable(ctx, "/r", ""); err != ErrNotFound {
		t.Fatalf("empty key: Reusable = %v, %v; want not found", b, err)
	}
}

// A sharded build takes the ids of its shard jobs: JobBuild finds it by any
// of them, and ids are allocated above them after a restart.
func TestShardJobsBelongToTheirBuild(t *testing.T) { stores(t, testShardJobsBelongToTheirBuild) }

func testShardJobsBelongToTheirBuild(t *testing.T, open opener) {
	s := open(t)
	ctx := context.Background()
	sharded := build(2, pontusv1.BuildStatus_BUILD_STATUS_RUNNING)
	for i := range 3 {
		sharded.Shards = append(sharded.Shards, &pontusv1.Shard{Index: int32(i), JobId: 3 + int64(i),
			Status: pontusv1.BuildStatus_BUILD_STATUS_QUEUED})
	}
	if got := LastJobID(sharded); got != 5 {
		t.Fatalf("LastJobID = %d, want 5", got)
	}
	c := s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_PASSED)}, Mutation{PutBuild: sharded})
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for job, want := range map[int64]int64{1: 1, 2: 2, 3: 2, 4: 2, 5: 2} {
		b, err := s.JobBuild(ctx, job)
		if err != nil || b.Id != want {
			t.Fatalf("JobBuild(%d) = %v, %v; want build %d", job, b, err, want)
		}
	}
	if _, err := s.JobBuild(ctx, 6); err != ErrNotFound {
		t.Fatalf("JobBuild(6) = %v, want ErrNotFound", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t)
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.NextID != 6 || len(st.Live) != 1 || len(st.Live[0].Shards) != 3 {
		t.Fatalf("after reopening: next id %d, live %v", st.NextID, st.Live)
	}
}

// CommitsByPrefix finds the distinct commits that start with a prefix, in
// one repository or all, and nothing beyond the prefix's range.
func TestCommitsByPrefix(t *testing.T) { stores(t, testCommitsByPrefix) }

func testCommitsByPrefix(t *testing.T, open opener) {
	s := open(t)
	ctx := t.Context()
	put := func(id int64, repo, commit string) {
		b := build(id, pontusv1.BuildStatus_BUILD_STATUS_PASSED)
		b.Repo, b.Commit = repo, commit
		if err := s.Enqueue(Mutation{PutBuild: b}).Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pad := func(p string) string { return p + strings.Repeat("0", 40-len(p)) }
	put(1, "/a", pad("abcd1"))
	put(2, "/a", pad("abcd1")) // the same commit again
	put(3, "/b", pad("abcd2"))
	put(4, "/a", pad("abce"))
	put(5, "/a", pad("abc9"))
	put(6, "/a", pad("ffff"))
	put(7, "/a", strings.Repeat("f", 40))
	for _, tc := range []struct {
		repo, prefix string
		limit        int
		want         []string
	}{
		{"", "abcd", 10, []string{pad("abcd1"), pad("abcd2")}},
		{"/a", "abcd", 10, []string{pad("abcd1")}},
		{"/b", "abcd", 10, []string{pad("abcd2")}},
		{"", "abcd", 1, []string{pad("abcd1")}},
		{"", "abc", 10, []string{pad("abc9"), pad("abcd1"), pad("abcd2"), pad("abce")}},
		{"", "abcd3", 10, nil},
		{"", "ffff", 10, []string{pad("ffff"), strings.Repeat("f", 40)}},
		{"", pad("abce"), 10, []string{pad("abce")}},
		{"/c", "abcd", 10, nil},
	} {
		got, err := s.CommitsByPrefix(ctx, tc.repo, tc.prefix, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("CommitsByPrefix(%q, %q, %d) = %q, want %q", tc.repo, tc.prefix, tc.limit, got, tc.want)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	for in, want := range map[string]string{"abcd": "abce", "abcf": "abd", "abc9": "abca", "a9ff": "aa", "ffff": "", "0": "1"} {
		if got := PrefixEnd(in); got != want {
			t.Errorf("PrefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkCommitsByPrefix is one 7-character prefix lookup among 50,000
// builds (a range scan of the commit index).
func BenchmarkCommitsByPrefix(b *testing.B) {
	s := sqliteOpener(b)(b)
	ctx := context.Background()
	muts := make([]Mutation, 50000)
	for i := range muts {
		bd := build(int64(i+1), pontusv1.BuildStatus_BUILD_STATUS_PASSED)
		bd.Commit = fmt.Sprintf("%x", sha1.Sum([]byte(strconv.Itoa(i))))
		muts[i] = Mutation{PutBuild: bd}
	}
	if err := s.Enqueue(muts...).Wait(ctx); err != nil {
		b.Fatal(err)
	}
	prefix := fmt.Sprintf("%x", sha1.Sum([]byte("777")))[:7]
	b.ResetTimer()
	for b.Loop() {
		if got, err := s.CommitsByPrefix(ctx, "", prefix, 6); err != nil || len(got) != 1 {
			b.Fatalf("%v %v", got, err)
		}
	}
}

// A finished build's test results go into the per-test history with the
// build, are replaced when it is written again, survive a reopen, are
// windowed by build, and go with the build's deletion; queued, errored and
// reused builds record none.
func TestTestRuns(t *testing.T) { stores(t, testTestRuns) }

func testTestRuns(t *testing.T, open opener) {
	s := open(t)
	ctx := context.Background()
	withTests := func(id int64, status pontusv1.BuildStatus, branch string, outcomes ...pontusv1.TestOutcome) *pontusv1.Build {
		b := build(id, status)
		b.Branch = branch
		for i, o := range outcomes {
			b.Tests = append(b.Tests, &pontusv1.TestCase{Name: fmt.Sprintf("T%d", i), Suite: "pkg", Outcome: o,
				Duration: durationpb.New(time.Duration(id) * time.Millisecond), Runs: int32(i)})
		}
		return b
	}
	const (
		pass  = pontusv1.TestOutcome_TEST_OUTCOME_PASSED
		fail  = pontusv1.TestOutcome_TEST_OUTCOME_FAILED
		flaky = pontusv1.TestOutcome_TEST_OUTCOME_FLAKY
	)
	big := withTests(6, pontusv1.BuildStatus_BUILD_STATUS_PASSED, "big")
	for i := range 250 { // several INSERT chunks
		big.Repo = "/big"
		big.Tests = append(big.Tests, &pontusv1.TestCase{Name: fmt.Sprintf("B%03d", i), Outcome: pass})
	}
	reused := withTests(5, pontusv1.BuildStatus_BUILD_STATUS_PASSED, "main", pass, pass)
	reused.ReusedBuild = 1
	muts := []Mutation{
		{PutBuild: withTests(1, pontusv1.BuildStatus_BUILD_STATUS_PASSED, "main", pass, pass)},
		{PutBuild: withTests(2, pontusv1.BuildStatus_BUILD_STATUS_RUNNING, "main", fail, fail)},
		{PutBuild: withTests(3, pontusv1.BuildStatus_BUILD_STATUS_ERROR, "main", fail)},
		{PutBuild: withTests(4, pontusv1.BuildStatus_BUILD_STATUS_FAILED, "dev", fail, pass)},
		{PutBuild: reused},
		{PutBuild: big},
	}
	if err := s.Enqueue(muts...).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// Build 2 finishes: its rows replace nothing and appear.
	if err := s.Enqueue(Mutation{PutBuild: withTests(2, pontusv1.BuildStatus_BUILD_STATUS_PASSED, "main", flaky, pass)}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// Written again (say, a culprit found): still one row per test.
	if err := s.Enqueue(Mutation{PutBuild: withTests(2, pontusv1.BuildStatus_BUILD_STATUS_PASSED, "main", flaky, pass)}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t)

	summary := func(q TestRunQuery) string {
		t.Helper()
		runs, err := s.TestRuns(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		// Newest build first; within a build, in no order.
		slices.SortStableFunc(runs, func(a, b TestRun) int {
			return cmp.Or(cmp.Compare(b.BuildID, a.BuildID), cmp.Compare(a.Name, b.Name))
		})
		var parts []string
		for _, r := range runs {
			parts = append(parts, fmt.Sprintf("%d/%s/%s/%s:%s:%v:%d", r.BuildID, r.Branch, r.Suite, r.Name,
				strings.TrimPrefix(r.Outcome.String(), "TEST_OUTCOME_"), r.Duration, r.Runs))
		}
		return strings.Join(parts, " ")
	}
	for _, c := range []struct {
		q    TestRunQuery
		want string
	}{
		{TestRunQuery{Repo: "/r"}, "4/dev/pkg/T0:FAILED:4ms:1 4/dev/pkg/T1:PASSED:4ms:1 2/main/pkg/T0:FLAKY:2ms:1 2/main/pkg/T1:PASSED:2ms:1 1/main/pkg/T0:PASSED:1ms:1 1/main/pkg/T1:PASSED:1ms:1"},
		{TestRunQuery{Repo: "/r", Branch: "main", Builds: 1}, "2/main/pkg/T0:FLAKY:2ms:1 2/main/pkg/T1:PASSED:2ms:1"},
		{TestRunQuery{Repo: "/r", Name: "T1", Suite: "pkg", Builds: 2}, "4/dev/pkg/T1:PASSED:4ms:1 2/main/pkg/T1:PASSED:2ms:1"},
		{TestRunQuery{Repo: "/r", Name: "T1", Suite: "other"}, ""},
		{TestRunQuery{Repo: "/other"}, ""},
		{TestRunQuery{Repo: "/big", Name: "B249"}, "6/big//B249:PASSED:-1ns:1"},
	} {
		if got := summary(c.q); got != c.want {
			t.Errorf("%+v:\n got %s\nwant %s", c.q, got, c.want)
		}
	}
	if err := s.Enqueue(Mutation{DeleteBuild: 2}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := summary(TestRunQuery{Branch: "main"}), "1/main/pkg/T0:PASSED:1ms:1 1/main/pkg/T1:PASSED:1ms:1"; got != want {
		t.Errorf("after deleting build 2: %s, want %s", got, want)
	}
}

// A store directory whose name holds what a file: URI reads specially
// ("?", "#", "%") gets its database there, and two such directories do not
// share one.
func TestSQLitePathWithURICharacters(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	for i, dir := range []string{"a?b", "a#b", "a%3Fb", "a"} {
		path := filepath.Join(base, dir, "pontus.db")
		s, err := OpenSQLite(path, SQLiteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b := build(int64(i+1), pontusv1.BuildStatus_BUILD_STATUS_PASSED)
		b.Repo = "/" + dir
		if err := s.Enqueue(Mutation{PutBuild: b}).Wait(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := s.ListBuilds(ctx, Query{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Repo != "/"+dir {
			t.Errorf("%s: the store holds %d builds (shared with another directory?)", dir, len(got))
		}
		s.Close()
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: the database is not where asked: %v", dir, err)
		}
	}
}
