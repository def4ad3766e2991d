package testreport
import ("testing";"fmt")
func TestDbg(t *testing.T) {
	in := append(readCapture(t, "unittest/py3.12.txt"), readCapture(t, "gotest/demo-v.txt")...)
	in = append(in, readCapture(t, "tap/tap14.tap")...)
	for _, r := range rows(Parse(in)) { fmt.Println(r) }
}
