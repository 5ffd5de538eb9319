package awsfake

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func call(t *testing.T, s *Server, target, contentType string, signed bool, body string) (int, http.Header, map[string]string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL(), strings.NewReader(body))
	req.Header.Set("X-Amz-Target", target)
	req.Header.Set("Content-Type", contentType)
	if signed {
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261122/eu-west-1/logs/aws4_request, SignedHeaders=host, Signature=00")
		req.Header.Set("X-Amz-Date", "20261122T073452Z")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]string
	json.Unmarshal(raw, &m)
	return res.StatusCode, res.Header, m
}

func TestProtocol(t *testing.T) {
	s := New("Svc_1", map[string]Handler{"Echo": func(body []byte) (any, *Error) {
		var in struct{ Name string }
		if e := Decode(body, &in); e != nil {
			return nil, e
		}
		if in.Name == "" {
			return nil, Errorf("InvalidParameterException", "name is required")
		}
		return map[string]string{"Name": in.Name}, nil
	}})
	defer s.Close()
	const ct = "application/x-amz-json-1.1"
	if code, h, m := call(t, s, "Svc_1.Echo", ct, true, `{"Name":"x"}`); code != 200 || m["Name"] != "x" || h.Get("Content-Type") != ct {
		t.Errorf("success: %d %v", code, m)
	}
	cases := []struct {
		target, ct string
		signed     bool
		body, typ  string
		status     int
	}{
		{"Svc_1.Echo", ct, true, `{}`, "InvalidParameterException", 400},
		{"Svc_1.Echo", ct, true, `{`, "SerializationException", 400},
		{"Svc_1.Echo", ct, false, `{"Name":"x"}`, "MissingAuthenticationTokenException", 400},
		{"Svc_1.Echo", "application/json", true, `{"Name":"x"}`, "SerializationException", 400},
		{"Svc_1.Nope", ct, true, `{}`, "UnknownOperationException", 400},
		{"Other.Echo", ct, true, `{}`, "UnknownOperationException", 400},
	}
	for _, c := range cases {
		code, h, m := call(t, s, c.target, c.ct, c.signed, c.body)
		if code != c.status || m["__type"] != c.typ || h.Get("X-Amzn-ErrorType") != c.typ || m["message"] == "" {
			t.Errorf("%+v: %d %v %q", c, code, m, h.Get("X-Amzn-ErrorType"))
		}
	}
	s.Fail("Echo", &Error{Status: 503, Type: "ServiceUnavailableException", Message: "later"})
	if code, _, m := call(t, s, "Svc_1.Echo", ct, true, `{"Name":"x"}`); code != 503 || m["__type"] != "ServiceUnavailableException" {
		t.Errorf("queued failure: %d %v", code, m)
	}
	if code, _, _ := call(t, s, "Svc_1.Echo", ct, true, `{"Name":"x"}`); code != 200 || s.Calls("Echo") != 5 {
		t.Errorf("after the queued failure: %d, %d calls", code, s.Calls("Echo"))
	}
}
