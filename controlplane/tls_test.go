package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// testPKI is a self-signed CA and a leaf certificate for 127.0.0.1 and
// localhost, written as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newTestPKI(t testing.TB) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Pontus test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "cert.pem"),
		keyFile:  filepath.Join(dir, "key.pem"),
	}
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	writePEM(t, p.certFile, "CERTIFICATE", leafDER)
	writePEM(t, p.keyFile, "PRIVATE KEY", keyDER)
	return p
}

// serveTLS serves a control plane with TLS on 127.0.0.1 and returns its
// https URL.
func serveTLS(t testing.TB, cfg Config) string {
	t.Helper()
	srv, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("TLS control plane did not stop within 20s")
		}
	})
	return "https://" + ln.Addr().String()
}

// With tls_cert and tls_key set, the control plane serves HTTPS and
// negotiates HTTP/2 through ALPN; a client trusting the CA file calls it,
// a client without the CA (or speaking plain HTTP) cannot.
func TestTLSRoundTrip(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey = pki.certFile, pki.keyFile
	cfg.UserToken = userTok
	url := serveTLS(t, cfg)

	dc := dial.Config{URL: url, Token: userTok, CAFile: pki.caFile}
	hc, err := dial.HTTPClient(dc)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	builds := pontusv1connect.NewBuildServiceClient(hc, url, dial.Options(dc)...)
	if _, err := builds.ListRunners(t.Context(), &pontusv1.ListRunnersRequest{}); err != nil {
		t.Fatalf("ListRunners over TLS: %v", err)
	}

	// The same client, a raw request: HTTP/2, negotiated by ALPN.
	var state tls.ConnectionState
	trace := &httptrace.ClientTrace{TLSHandshakeDone: func(cs tls.ConnectionState, _ error) { state = cs }}
	hc2, err := dial.HTTPClient(dc) // a fresh connection, so the handshake is traced
	if err != nil {
		t.Fatal(err)
	}
	defer hc2.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodPost,
		url+"/grpc.health.v1.Health/Check", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "SERVING") {
		t.Errorf("health over TLS: %d %s", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" || state.NegotiatedProtocol != "h2" {
		t.Errorf("response over %s, ALPN %q (handshake %q), want HTTP/2 via h2", resp.Proto, resp.TLS.NegotiatedProtocol, state.NegotiatedProtocol)
	}
	if state.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x, want at least 1.2", state.Version)
	}

	// A server stream works over TLS too.
	stream, err := builds.TailLog(t.Context(), &pontusv1.TailLogRequest{BuildId: 1})
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
	}
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("TailLog over TLS: %v, want not_found", err)
	}

	// Without the CA file the certificate is not trusted.
	noCA, err := dial.HTTPClient(dial.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer noCA.CloseIdleConnections()
	_, err = pontusv1connect.NewBuildServiceClient(noCA, url, dial.Options(dc)...).ListRunners(t.Context(), &pontusv1.ListRunnersRequest{})
	var unknownCA x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknownCA) && !strings.Contains(err.Error(), "certificate") {
		t.Errorf("client without the CA: %v, want a certificate error", err)
	}

	// Plain HTTP (h2c) to the TLS port fails rather than leaking anything.
	plainURL := "http://" + strings.TrimPrefix(url, "https://")
	plain, err := dial.HTTPClient(dial.Config{URL: plainURL})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := pontusv1connect.NewBuildServiceClient(plain, plainURL, dial.Options(dc)...).ListRunners(ctx, &pontusv1.ListRunnersRequest{}); err == nil {
		t.Error("plain h2c call to the TLS port succeeded")
	}

	// A CA file that holds no certificate is refused by the client.
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := dial.HTTPClient(dial.Config{URL: url, CAFile: junk}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("junk CA file: %v", err)
	}
}

// A certificate that cannot be loaded stops Serve with an error saying so,
// and the listener is released; half a TLS configuration is refused by
// Validate naming the key.
func TestTLSMisconfiguration(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey = pki.certFile, filepath.Join(t.TempDir(), "missing-key.pem")
	srv, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Serve(t.Context(), ln)
	if err == nil || !strings.Contains(err.Error(), "TLS certificate") {
		t.Errorf("Serve with a missing key: %v, want an error about the TLS certificate", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("listener still open after Serve refused to start")
	}
	if err := srv.Close(); err != nil {
		t.Errorf("close: %v", err)
	}

	half := testConfig(t)
	half.TLSCert = pki.certFile
	if err := half.Validate(); err == nil || !strings.Contains(err.Error(), "tls_cert") {
		t.Errorf("tls_cert without tls_key: %v", err)
	}
}
