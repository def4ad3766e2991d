package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/pgtest"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// replica is one `pontus controlplane --store` process.
type replica struct {
	addr, url, data, results string
	proc                     *Proc
}

func (r *replica) start(t *testing.T, dir, store string) {
	t.Helper()
	r.proc = Start(t, "controlplane "+r.addr, dir, nil, "controlplane",
		"--store", store, "--listen", r.addr, "--data", r.data, "--results", r.results)
}

// role returns what GET /replica says: "leader", "standby", or why it
// cannot say.
func (r *replica) role() string {
	res, err := http.Get(r.url + "/replica")
	if err != nil {
		return "down"
	}
	defer res.Body.Close()
	var st struct{ Role string }
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return err.Error()
	}
	return st.Role
}

func leaderAmong(t *testing.T, rs []*replica) *replica {
	t.Helper()
	var lead *replica
	WaitFor(t, "one leader", 30*time.Second, func() (bool, string) {
		lead = nil
		var roles []string
		n := 0
		for _, r := range rs {
			role := r.role()
			roles = append(roles, r.addr+"="+role)
			if role == "leader" {
				lead, n = r, n+1
			}
		}
		return n == 1, strings.Join(roles, " ")
	})
	return lead
}

func buildsVia(t *testing.T, url string) []*pontusv1.Build {
	t.Helper()
	hc, err := dial.HTTPClient(dial.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	var res *pontusv1.ListBuildsResponse
	WaitFor(t, "ListBuilds through "+url, 30*time.Second, func() (bool, string) {
		res, err = pontusv1connect.NewBuildServiceClient(hc, url).ListBuilds(context.Background(), &pontusv1.ListBuildsRequest{Limit: 1000})
		return err == nil, fmt.Sprint(err)
	})
	return res.Builds
}

// The chaos test of issue 13: three replicas on one PostgreSQL, a runner
// and an observer given all three URLs, a burst of commits during which
// the leader is SIGKILLed (and restarted later) and PostgreSQL itself is
// stopped (immediate) and started again. Every commit ends with exactly
// one result, visible through every replica and in every results_dir; no
// attempt is recorded twice; the job a runner held through the failovers
// is not taken from it (every build passes on attempt 1).
func TestReplicasSurviveLeaderKillAndPostgresRestart(t *testing.T) {
	pg := pgtest.Start(t)
	store, err := pg.CreateDatabase(t.Context(), "pontus")
	if err != nil {
		t.Fatal(err)
	}
	dir := TempDir(t)
	var rs []*replica
	var urls []string
	for i := range 3 {
		addr := FreeAddr(t)
		r := &replica{addr: addr, url: "http://" + addr,
			data: filepath.Join(dir, fmt.Sprint("cp", i)), results: filepath.Join(dir, fmt.Sprint("results", i))}
		r.start(t, dir, store)
		rs = append(rs, r)
		urls = append(urls, fmt.Sprintf("%q", r.url))
	}
	leaderAmong(t, rs)

	repo := NewRepo(t, map[string]string{"tests/test_ok.py": pyTest("test_ok", "import time; time.sleep(1)")})
	config := filepath.Join(dir, "pontus.toml")
	list := "[" + strings.Join(urls, ", ") + "]"
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`[runner]
controlplane = %s
workdir = %q
capacity = 3

[observer]
controlplane = %s
repo = %q
branches = ["main"]
mode = "every"
data_dir = %q
`, list, filepath.Join(dir, "runner"), list, repo.Dir, filepath.Join(dir, "obs"))), 0o644); err != nil {
		t.Fatal(err)
	}
	Start(t, "runner", dir, nil, "runnerd", "--config", config)
	Start(t, "observer", dir, nil, "observerd", "--config", config)
	commits := []string{repo.Head(t)}
	WaitResult(t, leaderAmong(t, rs).results, commits[0], 60*time.Second)

	var killed *replica
	var killedAt time.Time
	for i := range 12 {
		commits = append(commits, repo.Commit(t, fmt.Sprint("burst ", i), map[string]string{"n.txt": fmt.Sprint(i)}))
		time.Sleep(500 * time.Millisecond)
		switch i {
		case 3: // a job runs, another waits: the leader dies
			killed = leaderAmong(t, rs)
			killed.proc.Kill()
			killedAt = time.Now()
			t.Logf("SIGKILLed the leader %s", killed.addr)
		case 6:
			t.Log("stopping PostgreSQL (immediate)")
			if err := pg.Stop(pgtest.Immediate); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Second)
			if err := pg.Restart(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Log("PostgreSQL started again")
		case 9:
			killed.start(t, dir, store)
		}
	}

	for _, r := range rs {
		for _, c := range commits {
			WaitResultStatus(t, r.results, c, 120*time.Second, passed)
		}
	}
	var first time.Time
	for _, r := range rs {
		byCommit := map[string][]*pontusv1.Build{}
		for _, b := range buildsVia(t, r.url) {
			byCommit[b.Commit] = append(byCommit[b.Commit], b)
			seen := map[int32]bool{}
			for _, a := range b.Attempts {
				if seen[a.Number] {
					t.Errorf("build %d records attempt %d twice", b.Id, a.Number)
				}
				seen[a.Number] = true
				if s := a.StartedAt.AsTime(); s.After(killedAt) && (first.IsZero() || s.Before(first)) {
					first = s
				}
			}
			if b.Status != passed || b.Attempt != 1 || len(b.Attempts) != 1 {
				t.Errorf("build %d of %s through %s: %s on attempt %d (%d attempts): %s", b.Id, b.Commit[:10], r.addr, b.Status, b.Attempt, len(b.Attempts), b.Reason)
			}
		}
		for _, c := range commits {
			if n := len(byCommit[c]); n != 1 {
				t.Errorf("commit %s has %d builds through %s, want exactly 1", c[:10], n, r.addr)
			}
		}
	}
	if first.IsZero() {
		t.Fatal("no job was handed out after the leader was killed")
	}
	t.Logf("failover: SIGKILL of the leader to the next job handed out: %s", first.Sub(killedAt).Round(10*time.Millisecond))
}

// Two replicas started as an operator would by hand — flags only, one
// working directory, no --data — with the runner and observer given both
// URLs on the command line: whichever leads is SIGKILLed between commits,
// every commit's result reaches the other's results_dir, and the killed
// one's once it is back.
func TestTwoReplicasFromFlags(t *testing.T) {
	pg := pgtest.Start(t)
	store, err := pg.CreateDatabase(t.Context(), "pontus")
	if err != nil {
		t.Fatal(err)
	}
	dir := TempDir(t)
	var rs []*replica
	for _, name := range []string{"A", "B"} {
		addr := FreeAddr(t)
		r := &replica{addr: addr, url: "http://" + addr, results: filepath.Join(dir, "R"+name)}
		r.proc = Start(t, "controlplane "+name, dir, nil, "controlplane", "--store", store, "--listen", addr, "--results", r.results)
		rs = append(rs, r)
	}
	lead := leaderAmong(t, rs)
	both := rs[0].url + "," + rs[1].url
	repo := NewRepo(t, map[string]string{"tests/test_ok.py": pyTest("test_ok", "pass")})
	Start(t, "runner", dir, nil, "runnerd", "--controlplane", both, "--workdir", filepath.Join(dir, "work"))
	Start(t, "observer", dir, nil, "observerd", "--controlplane", both, "--repo", repo.Dir)
	commits := []string{repo.Head(t)}
	WaitResultStatus(t, lead.results, commits[0], 60*time.Second, passed)
	commits = append(commits, repo.Commit(t, "one", map[string]string{"n.txt": "1"}))
	WaitResultStatus(t, lead.results, commits[1], 60*time.Second, passed)

	lead.proc.Kill()
	other := rs[0]
	if other == lead {
		other = rs[1]
	}
	commits = append(commits, repo.Commit(t, "two", map[string]string{"n.txt": "2"}))
	WaitResultStatus(t, other.results, commits[2], 60*time.Second, passed)
	commits = append(commits, repo.Commit(t, "three", map[string]string{"n.txt": "3"}))
	WaitResultStatus(t, other.results, commits[3], 60*time.Second, passed)

	lead.proc = Start(t, "controlplane again", dir, nil, "controlplane", "--store", store, "--listen", lead.addr, "--results", lead.results)
	for _, r := range rs {
		for _, c := range commits {
			WaitResultStatus(t, r.results, c, 60*time.Second, passed)
		}
	}
}
