package runnerd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// shardArgs runs shardSteps for every shard of n and returns each shard's
// narrowed commands.
func shardArgs(t *testing.T, dir string, n int, known []*pontusv1.TestCase) [][]string {
	t.Helper()
	st, ok := detectTests(dir)
	if !ok {
		t.Fatal("no tests detected")
	}
	var out [][]string
	for i := range n {
		job := &pontusv1.Job{ShardIndex: int32(i), ShardCount: int32(n), KnownTests: known}
		steps, note := shardSteps(job, dir, []jobStep{{name: "tests", native: &st}})
		if !strings.HasPrefix(note, "[pontus: shard ") {
			t.Fatalf("note %q", note)
		}
		var cmds []string
		for _, s := range steps {
			cmds = append(cmds, strings.Join(s.native.argv, " "))
		}
		out = append(out, cmds)
	}
	return out
}

// Eight Python modules in four shards: two each the first time (by count),
// every module in exactly one shard; with recorded durations the slow
// module gets a shard of its own.
func TestShardsSplitPythonModules(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"tests/helper.py": "", "tests/notes.txt": ""}
	var mods []string
	for _, m := range []string{"test_a", "test_b", "test_c", "test_d", "test_e", "test_f", "test_g", "test_h"} {
		files["tests/"+m+".py"] = "import unittest\n"
		mods = append(mods, m)
	}
	writeFiles(t, dir, files)
	byCount := shardArgs(t, dir, 4, nil)
	var seen []string
	for i, cmds := range byCount {
		if len(cmds) != 1 {
			t.Fatalf("shard %d: %v", i, cmds)
		}
		f := strings.Fields(cmds[0])
		got := f[slices.Index(f, "-v")+1:]
		if len(got) != 2 {
			t.Fatalf("shard %d runs %v, want two modules", i, got)
		}
		seen = append(seen, got...)
	}
	slices.Sort(seen)
	if !slices.Equal(seen, mods) {
		t.Fatalf("modules run %v, want each of %v once", seen, mods)
	}

	var known []*pontusv1.TestCase
	for _, m := range mods {
		d := time.Second
		if m == "test_c" {
			d = 6 * time.Second
		}
		known = append(known, &pontusv1.TestCase{Name: "test_x (" + m + ".T.test_x)", Suite: m + ".T", Duration: durationpb.New(d)})
	}
	balanced := shardArgs(t, dir, 4, known)
	alone := false
	for _, cmds := range balanced {
		if strings.HasSuffix(cmds[0], "-v test_c") {
			alone = true
		}
	}
	if !alone {
		t.Fatalf("the 6 s module does not have a shard to itself: %v", balanced)
	}
}

// Go test functions are units: each shard runs go test -run over its own.
func TestShardsSplitGoTestFunctions(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.mod":                   "module example.com/m\n\ngo 1.22\n",
		"tests/a_test.go":          "package tests\nimport \"testing\"\nfunc TestOne(t *testing.T) {}\nfunc TestTwo(t *testing.T) {}\nfunc Testing(t *testing.T) {}\nfunc helper() {}\n",
		"tests/sub/b_test.go":      "package sub\nimport \"testing\"\nfunc TestThree(t *testing.T) {}\nfunc FuzzFour(f *testing.F) {}\n",
		"tests/testdata/x_test.go": "package x\nimport \"testing\"\nfunc TestNever(t *testing.T) {}\n",
	})
	shards := shardArgs(t, dir, 2, nil)
	all := strings.Join(slices.Concat(shards...), "\n")
	for _, want := range []string{"TestOne", "TestTwo", "TestThree", "FuzzFour"} {
		if strings.Count(all, want) != 1 {
			t.Errorf("%s appears %d times in %q", want, strings.Count(all, want), all)
		}
	}
	for _, never := range []string{"Testing", "TestNever", "helper"} {
		if strings.Contains(all, never) {
			t.Errorf("%s is run: %q", never, all)
		}
	}
	// Four units in two shards, by count: two each.
	for i, cmds := range shards {
		if n := strings.Count(strings.Join(cmds, " "), "Test") + strings.Count(strings.Join(cmds, " "), "Fuzz"); n != 2 {
			t.Errorf("shard %d runs %d functions: %v", i, n, cmds)
		}
	}
}

// More shards than units: the extra shards have nothing to run.
func TestShardWithNothingToDo(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"tests/test_only.py": ""})
	shards := shardArgs(t, dir, 3, nil)
	if len(shards[0]) != 1 || len(shards[1]) != 0 || len(shards[2]) != 0 {
		t.Fatalf("shards %v", shards)
	}
}

// Real shards on a real runner: the shards of a Python suite together run
// every test once, each reported by name. (Go suites are split the same way,
// TestShardsSplitGoTestFunctions; a cold go build as step_user is too slow
// for a test on a busy machine.)
func TestShardJobsRunTheirPart(t *testing.T) {
	t.Parallel()
	pyTest := func(name string) string {
		return "import unittest\n\n\nclass T(unittest.TestCase):\n    def " + name + "(self):\n        pass\n"
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"python", map[string]string{
			"tests/test_a.py": pyTest("test_one"), "tests/test_b.py": pyTest("test_two"), "tests/test_c.py": pyTest("test_three"),
		}, []string{"test_one", "test_three", "test_two"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := exec.LookPath("python3"); err != nil {
				t.Skip(err)
			}
			fake := newFakeCP(t)
			fake.start()
			repo := newRepo(t)
			c := repo.commit(tc.files)
			startRunner(t, goStepConfig(t, fake))
			var got []string
			for i := range 2 {
				key := fake.enqueueJob(&pontusv1.Job{Repo: repo.dir, CloneUrl: repo.dir, Branch: "main", Commit: c,
					ShardIndex: int32(i), ShardCount: 2})
				req, log := fake.waitDone(key)
				wantStatus(t, req, log, passed)
				if !strings.Contains(log, fmt.Sprintf("[pontus: shard %d of 2: ", i+1)) {
					t.Errorf("shard %d log:\n%s", i, log)
				}
				for _, tr := range req.Tests {
					name, _, _ := strings.Cut(tr.Name, " ")
					got = append(got, name)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("tests run by the two shards: %v, want each of %v once", got, tc.want)
			}
		})
	}
}

// Recorded durations reach the units they belong to: a Go test by package
// and top-level name (its time includes its subtests'), a unittest case by module, a
// plugin's test by its step's name.
func TestShardWeights(t *testing.T) {
	units := []testUnit{{key: "go:example.com/m/tests.TestOne"}, {key: "py:test_a"}, {key: "step:secrets"}, {key: "go:example.com/m/tests.TestNew"}}
	d := func(s float64) *durationpb.Duration { return durationpb.New(time.Duration(s * float64(time.Second))) }
	known := []*pontusv1.TestCase{
		{Name: "TestOne", Suite: "example.com/m/tests", Duration: d(2)},
		{Name: "TestOne/sub", Suite: "example.com/m/tests", Duration: d(1)},
		{Name: "test_x (test_a.T.test_x)", Suite: "test_a.T", Duration: d(4)},
		{Name: "secrets: no keys", Duration: d(5)},
	}
	got := weights(units, known)
	want := []time.Duration{2 * time.Second, 4 * time.Second, 5 * time.Second, 11 * time.Second / 3}
	if !slices.Equal(got, want) {
		t.Fatalf("weights %v, want %v (the unknown unit weighs the average)", got, want)
	}
}

// A pytest suite is split by test file: each shard runs the same pytest
// command over its own files instead of tests/.
func TestShardsSplitPytestFiles(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"tests/test_a.py": "def test_a():\n    pass\n", "tests/sub/b_test.py": "def test_b():\n    pass\n",
		"tests/helper.py": "", "tests/conftest.py": "",
	})
	st := pytestStep("python3", filepath.Join(t.TempDir(), "junit.xml"))
	var files []string
	for i := range 2 {
		job := &pontusv1.Job{ShardIndex: int32(i), ShardCount: 2}
		steps, _ := shardSteps(job, dir, []jobStep{{name: "tests", native: &st}})
		if len(steps) != 1 || !slices.Equal(steps[0].native.argv[:len(st.argv)-1], st.argv[:len(st.argv)-1]) {
			t.Fatalf("shard %d: %v", i, steps)
		}
		files = append(files, steps[0].native.argv[len(st.argv)-1:]...)
	}
	slices.Sort(files)
	if !slices.Equal(files, []string{"tests/sub/b_test.py", "tests/test_a.py"}) {
		t.Fatalf("files run by the shards: %v", files)
	}
}

// A failed test of a shard's unittest step can be re-run alone (retries):
// the shard's command is the plain unittest one, importing from tests/.
func TestShardUnittestStepCanRerunOneTest(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"tests/test_a.py": "", "tests/test_b.py": ""})
	st, _ := detectTests(dir)
	steps, _ := shardSteps(&pontusv1.Job{ShardIndex: 0, ShardCount: 2}, dir, []jobStep{{name: "tests", native: &st}})
	again, ok := rerunStep(dir, *steps[0].native, &pontusv1.TestCase{Name: "test_x (test_a.T.test_x)"})
	if !ok || strings.Join(again.argv, " ") != "python3 -m unittest -v test_a.T.test_x" {
		t.Fatalf("re-run: %v %v", again.argv, ok)
	}
	env := stepEnv(nil, &pontusv1.Job{}, again.env)
	if v, _ := lookup(env, "PYTHONPATH"); v != filepath.Join(dir, "tests") {
		t.Fatalf("re-run imports from %q, want tests/", v)
	}
}
