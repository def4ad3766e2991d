package web_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/pontus-ci/pontus/controlplane/web"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func benchGet(b *testing.B, url string) {
	b.Helper()
	c := &http.Client{}
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatalf("status %d", res.StatusCode)
		}
		b.SetBytes(n)
	}
}

// BenchmarkBuildsPage renders "/" with 50 builds over real HTTP.
func BenchmarkBuildsPage(b *testing.B) {
	s := startServer(b, web.Options{})
	for i := int64(1); i <= 50; i++ {
		s.fake.put(newBuild(i, "main", pontusv1.BuildStatus(1+i%8)))
	}
	benchGet(b, s.url+"/")
}

// BenchmarkBuildPage renders one build with 500 test results.
func BenchmarkBuildPage(b *testing.B) {
	s := startServer(b, web.Options{})
	bd := newBuild(1, "main", failed)
	for i := range 500 {
		o := pontusv1.TestOutcome_TEST_OUTCOME_PASSED
		if i%50 == 0 {
			o = pontusv1.TestOutcome_TEST_OUTCOME_FAILED
		}
		bd.Tests = append(bd.Tests, &pontusv1.TestCase{Name: fmt.Sprintf("TestCase%03d", i), Outcome: o, Message: "boom"})
	}
	s.fake.put(bd)
	benchGet(b, s.url+"/builds/1")
}
