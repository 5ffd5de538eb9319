package awsconf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// isolate keeps the SDK away from the developer's files, the instance
// metadata service and the environment's credentials.
func isolate(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
		"AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL_STS",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
}

var signTime = time.Date(2026, 11, 22, 7, 34, 52, 0, time.UTC)

func exampleCreds() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")
}

// received is what the test server saw of one request.
type received struct {
	method, path, query string
	header              http.Header
	body                []byte
	host                string
}

func recorder(t *testing.T) (*httptest.Server, func() received) {
	var mu sync.Mutex
	var last received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		last = received{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, header: r.Header.Clone(), body: body, host: r.Host}
		mu.Unlock()
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() received { mu.Lock(); defer mu.Unlock(); return last }
}

// resign signs what the server received, independently, with the same
// credentials and time; the result is what the signer should have sent.
func resign(t *testing.T, got received, service, region string) string {
	t.Helper()
	u := &url.URL{Scheme: "http", Host: got.host, Path: got.path, RawQuery: got.query}
	req, err := http.NewRequest(got.method, u.String(), bytes.NewReader(got.body))
	if err != nil {
		t.Fatal(err)
	}
	// Like AWS, take only the headers the request says it signed (the
	// transport adds Accept-Encoding after signing).
	_, signed, _ := strings.Cut(got.header.Get("Authorization"), "SignedHeaders=")
	signed, _, _ = strings.Cut(signed, ",")
	for _, h := range strings.Split(signed, ";") {
		k := http.CanonicalHeaderKey(h)
		if k == "X-Amz-Date" || k == "X-Amz-Security-Token" || k == "Host" || k == "Content-Length" {
			continue
		}
		req.Header[k] = got.header[k]
	}
	sum := sha256.Sum256(got.body)
	creds, _ := exampleCreds().Retrieve(context.Background())
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), service, region, signTime); err != nil {
		t.Fatal(err)
	}
	return req.Header.Get("Authorization")
}

func TestSignerMatchesTheSDKSigner(t *testing.T) {
	srv, last := recorder(t)
	s := &Signer{Credentials: exampleCreds(), Region: "eu-west-1", Service: "es", Now: func() time.Time { return signTime }}
	client := &http.Client{Transport: s}
	for _, c := range []struct {
		name, method string
		body         []byte
		header       map[string]string
	}{
		{"bulk", http.MethodPost, []byte("{\"index\":{}}\n{\"a\":1}\n"), map[string]string{"Content-Type": "application/x-ndjson"}},
		{"gzip", http.MethodPost, []byte("\x1f\x8b\x08\x00binary"), map[string]string{"Content-Encoding": "gzip"}},
		{"empty", http.MethodGet, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader
			if c.body != nil {
				body = bytes.NewReader(c.body)
			}
			req, err := http.NewRequest(c.method, srv.URL+"/_bulk?pipeline=p", body)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			got := last()
			if !bytes.Equal(got.body, c.body) {
				t.Errorf("body changed: %q", got.body)
			}
			sum := sha256.Sum256(c.body)
			auth := got.header.Get("Authorization")
			switch {
			case got.header.Get("X-Amz-Content-Sha256") != hex.EncodeToString(sum[:]):
				t.Errorf("content hash %s", got.header.Get("X-Amz-Content-Sha256"))
			case got.header.Get("X-Amz-Date") != "20261122T073452Z":
				t.Errorf("date %s", got.header.Get("X-Amz-Date"))
			case got.header.Get("X-Amz-Security-Token") != "session-token":
				t.Errorf("token %q", got.header.Get("X-Amz-Security-Token"))
			case !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261122/eu-west-1/es/aws4_request, SignedHeaders="):
				t.Errorf("authorization %s", auth)
			case !strings.Contains(auth, "host") || !strings.Contains(auth, "x-amz-content-sha256") || !strings.Contains(auth, "x-amz-date"):
				t.Errorf("signed headers in %s", auth)
			}
			if want := resign(t, got, "es", "eu-west-1"); auth != want {
				t.Errorf("signature differs from the SDK's:\n got %s\nwant %s", auth, want)
			}
			if req.Header.Get("Authorization") != "" || req.Header.Get("X-Amz-Content-Sha256") != "" {
				t.Error("the caller's request was modified")
			}
		})
	}
}

// A body changed after signing no longer matches the signature.
func TestSignatureCoversTheBody(t *testing.T) {
	srv, last := recorder(t)
	s := &Signer{Credentials: exampleCreds(), Region: "us-east-1", Service: "aoss", Now: func() time.Time { return signTime }}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/_bulk", strings.NewReader("original"))
	res, err := (&http.Client{Transport: s}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	got := last()
	if resign(t, got, "aoss", "us-east-1") != got.header.Get("Authorization") {
		t.Fatal("untampered request does not verify")
	}
	got.body = []byte("tampered")
	got.header.Set("X-Amz-Content-Sha256", fmt.Sprintf("%x", sha256.Sum256(got.body)))
	if resign(t, got, "aoss", "us-east-1") == got.header.Get("Authorization") {
		t.Fatal("a changed body verified")
	}
}

func TestSignerRefusesOtherCredentialsAndCredentialErrors(t *testing.T) {
	srv, last := recorder(t)
	s := &Signer{Credentials: exampleCreds(), Region: "us-east-1", Service: "es"}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	req.SetBasicAuth("u", "p")
	if _, err := (&http.Client{Transport: s}).Do(req); !errors.Is(err, ErrAuthorizationSet) {
		t.Errorf("with basic auth: %v", err)
	}
	bad := &Signer{Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, errors.New("no credentials anywhere")
	}), Region: "us-east-1", Service: "es"}
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	if _, err := (&http.Client{Transport: bad}).Do(req); err == nil || !strings.Contains(err.Error(), "no credentials anywhere") {
		t.Errorf("credential error: %v", err)
	}
	if last().method != "" {
		t.Error("a request was sent")
	}
}

func TestLoadFromEnvironmentAndFiles(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-env")
	t.Setenv("AWS_REGION", "ap-south-1")
	cfg, err := Config{}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "AKIDENV" || cfg.Region != "ap-south-1" {
		t.Errorf("env: %v %+v %s", err, creds.AccessKeyID, cfg.Region)
	}

	isolate(t)
	file := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if err := os.WriteFile(file, []byte("[logs]\naws_access_key_id = AKIDFILE\naws_secret_access_key = secret-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_PROFILE", "logs")
	cfg, err = Config{Region: "eu-central-1", Endpoint: "http://127.0.0.1:4566"}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err = cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "AKIDFILE" || cfg.Region != "eu-central-1" || aws.ToString(cfg.BaseEndpoint) != "http://127.0.0.1:4566" {
		t.Errorf("profile: %v %s %s %v", err, creds.AccessKeyID, cfg.Region, cfg.BaseEndpoint)
	}

	isolate(t)
	if _, err := (Config{}).Load(context.Background()); err == nil || !strings.HasPrefix(err.Error(), "region: ") {
		t.Errorf("no region: %v", err)
	}
}

// fakeSTS speaks STS's query protocol for AssumeRole and
// AssumeRoleWithWebIdentity.
type fakeSTS struct {
	mu    sync.Mutex
	forms []url.Values
	auth  []string
	deny  bool
}

func (f *fakeSTS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		w.WriteHeader(400)
		return
	}
	f.mu.Lock()
	f.forms = append(f.forms, r.PostForm)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	deny := f.deny
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	if deny {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to perform: sts:AssumeRole</Message></Error><RequestId>req-1</RequestId></ErrorResponse>`)
		return
	}
	action := r.PostForm.Get("Action")
	creds := `<Credentials><AccessKeyId>ASIAASSUMED</AccessKeyId><SecretAccessKey>assumed-secret</SecretAccessKey><SessionToken>assumed-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>`
	fmt.Fprintf(w, `<%[1]sResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><%[1]sResult>%[2]s<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/logs/sluice</Arn><AssumedRoleId>AROA:sluice</AssumedRoleId></AssumedRoleUser></%[1]sResult><ResponseMetadata><RequestId>req-2</RequestId></ResponseMetadata></%[1]sResponse>`, action, creds)
}

func TestAssumeRole(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDBASE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-base")
	sts := &fakeSTS{}
	srv := httptest.NewServer(sts)
	defer srv.Close()
	c := Config{Region: "us-west-2", RoleARN: "arn:aws:iam::123456789012:role/logs", ExternalID: "ext-1", STSEndpoint: srv.URL}
	cfg, err := c.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "ASIAASSUMED" || creds.SessionToken != "assumed-token" {
		t.Fatalf("assumed credentials: %v %+v", err, creds.AccessKeyID)
	}
	f := sts.forms[0]
	if f.Get("Action") != "AssumeRole" || f.Get("RoleArn") != c.RoleARN || f.Get("ExternalId") != "ext-1" || f.Get("RoleSessionName") != "sluice" {
		t.Errorf("STS saw %v", f)
	}
	if !strings.HasPrefix(sts.auth[0], "AWS4-HMAC-SHA256 Credential=AKIDBASE/") || !strings.Contains(sts.auth[0], "/us-west-2/sts/aws4_request") {
		t.Errorf("the STS call was not signed with the base credentials: %s", sts.auth[0])
	}

	sts.deny = true
	cfg, err = Config{Region: "us-west-2", RoleARN: "arn:aws:iam::123456789012:role/other", STSEndpoint: srv.URL}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Credentials.Retrieve(context.Background()); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("denied: %v", err)
	}
}

// IRSA: the web identity token of the pod's service account is exchanged
// for the role's credentials.
func TestWebIdentity(t *testing.T) {
	isolate(t)
	sts := &fakeSTS{}
	srv := httptest.NewServer(sts)
	defer srv.Close()
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("eyJ.service-account.token"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/sluice-irsa")
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", token)
	t.Setenv("AWS_ENDPOINT_URL_STS", srv.URL)
	cfg, err := Config{Region: "eu-west-1"}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "ASIAASSUMED" {
		t.Fatalf("web identity credentials: %v %+v", err, creds.AccessKeyID)
	}
	f := sts.forms[0]
	if f.Get("Action") != "AssumeRoleWithWebIdentity" || f.Get("WebIdentityToken") != "eyJ.service-account.token" ||
		f.Get("RoleArn") != "arn:aws:iam::123456789012:role/sluice-irsa" {
		t.Errorf("STS saw %v", f)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		c    Config
		want string
	}{
		{Config{}, ""},
		{Config{RoleARN: "arn:aws:iam::123456789012:role/logs"}, ""},
		{Config{RoleARN: "arn:aws-us-gov:iam::123456789012:role/path/logs", ExternalID: "x"}, ""},
		{Config{RoleARN: "logs"}, "role_arn: "},
		{Config{RoleARN: "arn:aws:iam::1234:role/logs"}, "role_arn: "},
		{Config{ExternalID: "x"}, "external_id: "},
		{Config{Endpoint: "localhost:4566"}, "endpoint: "},
		{Config{STSEndpoint: "ftp://x"}, "sts_endpoint: "},
		{Config{Endpoint: "http://localstack:4566"}, ""},
	}
	for _, c := range cases {
		err := c.c.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.c, err, c.want)
		}
	}
}
