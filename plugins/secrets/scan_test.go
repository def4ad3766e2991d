package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// PlantedKey returns a freshly generated PEM private key, so no key text is
// committed (and this repository's own secrets scan stays clean).
func plantedKey(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func TestScanFindsSecrets(t *testing.T) {
	t.Parallel()
	// Tokens are assembled at run time for the same reason.
	cases := []struct {
		name, text, rule string
	}{
		{"private key", "x\n" + string(plantedKey(t)), "private keys"},
		{"aws key id", "aws_access_key_id = " + "AKIA" + "Q3EGRJ5TWZ7LM2XB\n", "AWS access key ids"},
		{"aws secret", "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Tb4Lw9v\n", "AWS secret access keys"},
		{"github", "token: " + "ghp_" + "R2d2C3poR2d2C3poR2d2C3poR2d2C3poAbCd\n", "GitHub tokens"},
		{"github fine-grained", "github_pat_" + strings.Repeat("A1b2", 5) + "Xy_" + strings.Repeat("Qw3Er", 11) + "Tyu1\n", "GitHub tokens"},
		{"gitlab", "GITLAB=" + "glpat-" + "x9Y8w7V6u5T4s3R2q1P0\n", "GitLab tokens"},
		{"slack", "const s = \"" + "xoxb-" + "1234567890-abcdefGHIJKL\"\n", "Slack tokens"},
		{"password", `db_password = "` + `q8#Lz!r2Vw9@kTb5"` + "\n", "hard-coded passwords"},
		{"go password", `password := "` + `Zk4mQ9xW2pLr7NvB"` + "\n", "hard-coded passwords"},
	}
	rs := rules()
	for _, c := range cases {
		fs := scan(rs, "f.txt", []byte(c.text))
		if len(fs) != 1 || fs[0].rule.id != c.rule {
			t.Errorf("%s: findings = %+v, want one from rule %q", c.name, fs, c.rule)
			continue
		}
		if c.rule != "private keys" && strings.Contains(fs[0].text, strings.TrimSpace(c.text)[len(c.text)/2:]) {
			t.Errorf("%s: finding text %q is not redacted", c.name, fs[0].text)
		}
	}
}

func TestScanIgnoresHarmlessText(t *testing.T) {
	t.Parallel()
	harmless := []string{
		"-----" + "BEGIN RSA PRIVATE KEY-----\n(the header alone, in documentation)\n",
		"aws_access_key_id = " + "AKIA" + "IOSFODNN7EXAMPLE\n",
		`password = "` + `aaaaaaaaaaaaaaaa"` + "\n",
		`password = "` + `${DB_PASSWORD_FROM_ENV}"` + "\n",
		`password = "` + `changeme-please-123"` + "\n",
		"token: " + "ghp_" + "R2d2C3poR2d2C3poR2d2C3poR2d2C3poAbCd # " + allowMarker + "\n",
		"func password() string { return lookup(\"pw\") }\n",
		`Password: "` + `XDG_RUNTIME_DIR-bar",` + "\n",
		`Password: "` + `a-refresh-token..client-id",` + "\n",
	}
	rs := rules()
	for _, h := range harmless {
		if fs := scan(rs, "f.txt", []byte(h)); len(fs) != 0 {
			t.Errorf("scan(%q) = %+v, want nothing", h, fs)
		}
	}
}

func TestRunTAP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", []byte("# hello\n"))
	write(".git/keys/id", plantedKey(t)) // .git is skipped
	write("bin/blob", append([]byte{0}, plantedKey(t)...))

	var out, errOut strings.Builder
	if code := run([]string{dir}, &out, &errOut); code != 0 {
		t.Fatalf("clean tree: exit %d, want 0\n%s%s", code, out.String(), errOut.String())
	}

	write("deploy/id_ecdsa", append([]byte("# deploy key\n"), plantedKey(t)...))
	out.Reset()
	if code := run([]string{dir}, &out, &errOut); code != 1 {
		t.Fatalf("planted key: exit %d, want 1\n%s", code, out.String())
	}
	for _, want := range []string{"not ok 1 - private keys", "deploy/id_ecdsa:2: private key block", "ok 2 - AWS access key ids", "1..7"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
