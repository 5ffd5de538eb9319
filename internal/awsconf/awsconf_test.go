package awsconf

import (
	"context"
	"fmt"
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
)

// isolate keeps the SDK away from the developer's environment and files
// and from the instance metadata service: every AWS_ variable is unset for
// the test, and the shared files are (absent) files in a temporary
// directory.
func isolate(t *testing.T) (configFile, credentialsFile string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
	dir := t.TempDir()
	configFile, credentialsFile = filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", configFile)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credentialsFile)
	return configFile, credentialsFile
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// refuse is a server that fails the test if anything reaches it.
func refuse(t *testing.T, what string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a request reached %s: %s %s", what, r.Method, r.URL)
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestLoadFromEnvironment(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-env")
	t.Setenv("AWS_SESSION_TOKEN", "token-env")
	t.Setenv("AWS_REGION", "ap-south-1")
	cfg, err := Config{}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "AKIDENV" || creds.SecretAccessKey != "secret-env" || creds.SessionToken != "token-env" {
		t.Errorf("credentials: %v %s", err, creds.AccessKeyID)
	}
	if cfg.Region != "ap-south-1" || cfg.BaseEndpoint != nil {
		t.Errorf("region %q, endpoint %v", cfg.Region, cfg.BaseEndpoint)
	}

	// The configured region wins over the environment's.
	cfg, err = Config{Region: "eu-west-3"}.Load(context.Background())
	if err != nil || cfg.Region != "eu-west-3" {
		t.Errorf("configured region: %v %q", err, cfg.Region)
	}
}

func TestLoadFromSharedFiles(t *testing.T) {
	configFile, credentialsFile := isolate(t)
	writeFile(t, credentialsFile, "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = secret-default\n\n"+
		"[logs]\naws_access_key_id = AKIDFILE\naws_secret_access_key = secret-file\n")
	writeFile(t, configFile, "[profile logs]\nregion = eu-central-1\n")
	t.Setenv("AWS_PROFILE", "logs")
	cfg, err := Config{Endpoint: "http://127.0.0.1:4566"}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "AKIDFILE" || creds.SecretAccessKey != "secret-file" {
		t.Errorf("credentials: %v %s", err, creds.AccessKeyID)
	}
	if cfg.Region != "eu-central-1" {
		t.Errorf("region from the profile: %q", cfg.Region)
	}
	if aws.ToString(cfg.BaseEndpoint) != "http://127.0.0.1:4566" {
		t.Errorf("endpoint %v", aws.ToString(cfg.BaseEndpoint))
	}

	t.Setenv("AWS_PROFILE", "missing")
	if _, err := (Config{Region: "eu-west-1"}).Load(context.Background()); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing profile: %v", err)
	}
}

func TestLoadWithoutRegion(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-env")
	_, err := Config{}.Load(context.Background())
	if err == nil || err.Error() != "region: not set and not found in the environment (AWS_REGION)" {
		t.Errorf("no region: %v", err)
	}
}

func TestLoadValidates(t *testing.T) {
	isolate(t)
	if _, err := (Config{Region: "eu-west-1", RoleARN: "logs"}).Load(context.Background()); err == nil || !strings.HasPrefix(err.Error(), "role_arn: ") {
		t.Errorf("invalid config: %v", err)
	}
}

// Credentials the fake STS hands out.
var (
	assumed = aws.Credentials{AccessKeyID: "ASIAASSUMED", SecretAccessKey: "assumed-secret", SessionToken: "assumed-token"}
	webID   = aws.Credentials{AccessKeyID: "ASIAWEBIDENTITY", SecretAccessKey: "webid-secret", SessionToken: "webid-token"}
	base    = aws.Credentials{AccessKeyID: "AKIDBASE", SecretAccessKey: "secret-base"}
)

const expiration = "2099-01-01T00:00:00Z"

// stsCall is one call the fake STS received.
type stsCall struct {
	form      url.Values
	auth      string
	verifyErr error // of the SigV4 signature; nil: valid
}

// fakeSTS speaks STS's query protocol (a form POST with Action and
// Version, XML responses) for AssumeRole and AssumeRoleWithWebIdentity, on
// 127.0.0.1. AssumeRole must be signed with credentials it knows.
type fakeSTS struct {
	*httptest.Server
	verify *verifier

	mu    sync.Mutex
	calls []stsCall
	deny  bool
}

func newFakeSTS(t *testing.T) *fakeSTS {
	f := &fakeSTS{verify: newVerifier(base, webID)}
	f.Server = httptest.NewServer(f)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeSTS) setDeny(deny bool) {
	f.mu.Lock()
	f.deny = deny
	f.mu.Unlock()
}

func (f *fakeSTS) received() []stsCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]stsCall(nil), f.calls...)
}

func (f *fakeSTS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got := f.verify.record(r) // reads the body
	form, err := url.ParseQuery(string(got.body))
	if err != nil || r.Method != http.MethodPost || r.URL.Path != "/" ||
		r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || form.Get("Version") != "2011-06-15" {
		http.Error(w, "not an STS query request", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, stsCall{form: form, auth: r.Header.Get("Authorization"), verifyErr: got.err})
	deny := f.deny
	f.mu.Unlock()

	w.Header().Set("Content-Type", "text/xml")
	action := form.Get("Action")
	creds := assumed
	switch {
	case deny:
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/base is not authorized to perform: sts:AssumeRole on resource: %s</Message></Error><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>`, form.Get("RoleArn"))
		return
	case action == "AssumeRole" && got.err != nil:
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error><RequestId>r-1</RequestId></ErrorResponse>`)
		return
	case action == "AssumeRoleWithWebIdentity":
		creds = webID
	case action != "AssumeRole":
		http.Error(w, "unknown action "+action, http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, `<%[1]sResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <%[1]sResult>
    <Credentials>
      <AccessKeyId>%[2]s</AccessKeyId>
      <SecretAccessKey>%[3]s</SecretAccessKey>
      <SessionToken>%[4]s</SessionToken>
      <Expiration>%[5]s</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/logs/%[6]s</Arn>
      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:%[6]s</AssumedRoleId>
    </AssumedRoleUser>
  </%[1]sResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</%[1]sResponse>`, action, creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken, expiration, form.Get("RoleSessionName"))
}

func TestAssumeRole(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", base.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", base.SecretAccessKey)
	// sts_endpoint wins over the SDK's variable; endpoint is not STS's.
	t.Setenv("AWS_ENDPOINT_URL_STS", refuse(t, "AWS_ENDPOINT_URL_STS"))
	fake := newFakeSTS(t)
	c := Config{Region: "us-west-2", RoleARN: "arn:aws:iam::123456789012:role/logs", ExternalID: "ext-1",
		STSEndpoint: fake.URL, Endpoint: refuse(t, "the service endpoint")}
	cfg, err := c.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(fake.received()) != 0 {
		t.Error("Load called STS")
	}
	for range 3 { // cached: one call; refreshed expiryWindow early
		creds, err := cfg.Credentials.Retrieve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if creds.AccessKeyID != assumed.AccessKeyID || creds.SecretAccessKey != assumed.SecretAccessKey ||
			creds.SessionToken != assumed.SessionToken || !creds.CanExpire || !creds.Expires.Equal(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).Add(-expiryWindow)) {
			t.Fatalf("assumed credentials: %s %v %v", creds.AccessKeyID, creds.CanExpire, creds.Expires)
		}
	}
	calls := fake.received()
	if len(calls) != 1 {
		t.Fatalf("%d STS calls", len(calls))
	}
	f := calls[0].form
	if f.Get("Action") != "AssumeRole" || f.Get("RoleArn") != c.RoleARN || f.Get("ExternalId") != "ext-1" || f.Get("RoleSessionName") != "sluice" {
		t.Errorf("STS saw %v", f)
	}
	credential, _, _, _ := authParts(calls[0].auth)
	if !strings.HasPrefix(credential, base.AccessKeyID+"/") || !strings.HasSuffix(credential, "/us-west-2/sts/aws4_request") {
		t.Errorf("the STS call was not signed with the base credentials: %s", credential)
	}
	if calls[0].verifyErr != nil {
		t.Errorf("the signature of the STS call does not verify with the base credentials: %v", calls[0].verifyErr)
	}

	// A session name of one's own.
	c.SessionName = "sluice-prod"
	cfg, err = c.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Credentials.Retrieve(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls := fake.received(); calls[len(calls)-1].form.Get("RoleSessionName") != "sluice-prod" {
		t.Errorf("session name %v", calls[len(calls)-1].form)
	}
}

func TestAssumeRoleDenied(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", base.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", base.SecretAccessKey)
	fake := newFakeSTS(t)
	fake.setDeny(true)
	cfg, err := Config{Region: "us-west-2", RoleARN: "arn:aws:iam::123456789012:role/other", STSEndpoint: fake.URL}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Credentials.Retrieve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("denied: %v", err)
	}
	if strings.Contains(err.Error(), base.SecretAccessKey) {
		t.Errorf("the error shows the secret: %v", err)
	}
	if n := len(fake.received()); n != 1 {
		t.Errorf("%d STS calls: a 403 is not retried", n)
	}
}

// irsa sets up what EKS gives a pod of a service account with a role:
// the role, a web identity token file, and (here) STS at the fake.
func irsa(t *testing.T, fake *fakeSTS, token string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "token")
	writeFile(t, file, token)
	t.Setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/sluice-irsa")
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", file)
	t.Setenv("AWS_ENDPOINT_URL_STS", fake.URL)
}

// IRSA: the web identity token of the pod's service account is exchanged
// for the role's credentials, at the STS endpoint of AWS_ENDPOINT_URL_STS.
func TestWebIdentity(t *testing.T) {
	isolate(t)
	fake := newFakeSTS(t)
	irsa(t, fake, "eyJhbGciOiJSUzI1NiJ9.service-account.token")
	cfg, err := Config{Region: "eu-west-1"}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != webID.AccessKeyID || creds.SecretAccessKey != webID.SecretAccessKey || creds.SessionToken != webID.SessionToken {
		t.Fatalf("web identity credentials: %v %s", err, creds.AccessKeyID)
	}
	calls := fake.received()
	if len(calls) != 1 {
		t.Fatalf("%d STS calls", len(calls))
	}
	f := calls[0].form
	if f.Get("Action") != "AssumeRoleWithWebIdentity" || f.Get("WebIdentityToken") != "eyJhbGciOiJSUzI1NiJ9.service-account.token" ||
		f.Get("RoleArn") != "arn:aws:iam::123456789012:role/sluice-irsa" || f.Get("RoleSessionName") == "" {
		t.Errorf("STS saw %v", f)
	}
	if calls[0].auth != "" {
		t.Errorf("AssumeRoleWithWebIdentity was signed: %s", calls[0].auth)
	}
}

// IRSA with role_arn: the web identity's credentials assume the role.
func TestWebIdentityThenAssumeRole(t *testing.T) {
	isolate(t)
	fake := newFakeSTS(t)
	irsa(t, fake, "eyJ.token")
	cfg, err := Config{Region: "eu-west-1", RoleARN: "arn:aws-cn:iam::210987654321:role/path/to/logs"}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != assumed.AccessKeyID {
		t.Fatalf("credentials: %v %s", err, creds.AccessKeyID)
	}
	calls := fake.received()
	if len(calls) != 2 || calls[0].form.Get("Action") != "AssumeRoleWithWebIdentity" || calls[1].form.Get("Action") != "AssumeRole" {
		t.Fatalf("STS calls %+v", calls)
	}
	if credential, _, _, _ := authParts(calls[1].auth); !strings.HasPrefix(credential, webID.AccessKeyID+"/") || calls[1].verifyErr != nil {
		t.Errorf("AssumeRole was not signed with the web identity's credentials: %s %v", credential, calls[1].verifyErr)
	}
	if calls[1].form.Get("RoleArn") != "arn:aws-cn:iam::210987654321:role/path/to/logs" {
		t.Errorf("RoleArn %s", calls[1].form.Get("RoleArn"))
	}
}

func TestValidate(t *testing.T) {
	const role = "arn:aws:iam::123456789012:role/logs"
	cases := []struct {
		c      Config
		prefix string // "" means valid
	}{
		{Config{}, ""},
		{Config{Region: "eu-west-1", SessionName: "sluice"}, ""},
		{Config{Region: "us-gov-east-1", RoleARN: "arn:aws-us-gov:iam::123456789012:role/path/logs", ExternalID: "x-1", SessionName: "node@eu.1"}, ""},
		{Config{RoleARN: "arn:aws-cn:iam::123456789012:role/logs"}, ""},
		{Config{RoleARN: "arn:aws-iso-b:iam::123456789012:role/a/b/c", STSEndpoint: "https://sts.eu-west-1.amazonaws.com"}, ""},
		{Config{Endpoint: "http://localstack:4566"}, ""},
		{Config{Endpoint: "https://127.0.0.1:4566/base"}, ""},

		{Config{Region: "EU West 1"}, "region: "},
		{Config{Region: "eu-west-1."}, "region: "},
		{Config{RoleARN: "logs"}, "role_arn: "},
		{Config{RoleARN: "arn:aws:iam::1234:role/logs"}, "role_arn: "},
		{Config{RoleARN: "arn:aws:iam::123456789012:user/logs"}, "role_arn: "},
		{Config{RoleARN: "arn:aws:iam::123456789012:role/"}, "role_arn: "},
		{Config{RoleARN: "arn:awsx:iam::123456789012:role/logs"}, "role_arn: "},
		{Config{RoleARN: "arn:aws:sts::123456789012:assumed-role/logs/s"}, "role_arn: "},
		{Config{ExternalID: "x1"}, "external_id: "},
		{Config{RoleARN: role, ExternalID: "x"}, "external_id: "},
		{Config{RoleARN: role, ExternalID: "has space"}, "external_id: "},
		{Config{RoleARN: role, SessionName: "a"}, "role_session_name: "},
		{Config{RoleARN: role, SessionName: "with space"}, "role_session_name: "},
		{Config{RoleARN: role, SessionName: strings.Repeat("s", 65)}, "role_session_name: "},
		{Config{Endpoint: "localhost:4566"}, "endpoint: "},
		{Config{Endpoint: "/relative"}, "endpoint: "},
		{Config{Endpoint: "ftp://host"}, "endpoint: "},
		{Config{Endpoint: "http://"}, "endpoint: "},
		{Config{Endpoint: "http://user:pass@localstack:4566"}, "endpoint: "},
		{Config{Endpoint: "http://localstack:4566/?a=b"}, "endpoint: "},
		{Config{RoleARN: role, STSEndpoint: "ftp://x"}, "sts_endpoint: "},
		{Config{RoleARN: role, STSEndpoint: "sts.amazonaws.com"}, "sts_endpoint: "},
		{Config{STSEndpoint: "https://sts.amazonaws.com"}, "sts_endpoint: "},
	}
	for _, c := range cases {
		err := c.c.Validate()
		switch {
		case c.prefix == "" && err != nil:
			t.Errorf("%+v: %v", c.c, err)
		case c.prefix != "" && (err == nil || !strings.HasPrefix(err.Error(), c.prefix)):
			t.Errorf("%+v: %v, want an error starting with %q", c.c, err, c.prefix)
		case err != nil && strings.Contains(err.Error(), "pass"):
			t.Errorf("%+v: the error shows a password: %v", c.c, err)
		}
	}
}
