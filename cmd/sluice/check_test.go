package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The documented example's tests pass (the seed's nginx annotation, errors
// only to CloudWatch, a Java trace joined); one wrong expectation fails
// with exit code 1 and says which field differs, and a test naming an
// unknown sink is a configuration error.
func TestCheckRunsConfigTests(t *testing.T) {
	example := "../../docs/examples/tests.yaml"
	var out, errOut strings.Builder
	if code := check(example, &out, &errOut); code != 0 || !strings.Contains(out.String(), "3 tests passed") {
		t.Fatalf("example: exit %d\n%s%s", code, out.String(), errOut.String())
	}

	raw, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(raw), `code: "200"`, `code: "404"`, 1)
	bad = strings.Replace(bad, "        - {level: error, msg: payment refused}\n", "", 1)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	code := check(path, &out, &errOut)
	for _, want := range []string{
		"FAIL nginx access line parsed by its annotation",
		`sink es: record 1: data.code: got "200", want "404"`,
		"FAIL errors only to CloudWatch",
		"sink cloudwatch: received 1 records, want 0",
		"ok   a Java stack trace joined",
		"2 of 3 tests failed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
	if code != 1 {
		t.Errorf("exit %d with failing tests, want 1", code)
	}

	unknown := strings.Replace(string(raw), "      cloudwatch: []\n", "      nosuch: []\n", 1)
	if err := os.WriteFile(path, []byte(unknown), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := check(path, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `tests[0].expect: "nosuch" is not the name of a sink`) {
		t.Errorf("unknown sink in a test: exit %d, %q", code, errOut.String())
	}
}
