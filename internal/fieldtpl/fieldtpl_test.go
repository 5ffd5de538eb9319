package fieldtpl

import (
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func record(t *testing.T, v map[string]any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTemplateAppend(t *testing.T) {
	rec := record(t, map[string]any{
		"kubernetes": map[string]any{"namespace_name": "shop", "pod_name": "web-1",
			"labels": map[string]any{"app": "web"}},
		"level": "error", "code": 503, "neg": -7, "ratio": 0.5, "ok": true,
		"nothing": nil, "list": []any{1}, "big": uint64(1 << 63),
	})
	cases := []struct {
		tpl, tag, want string
		ok             bool
	}{
		{"sluice", "t", "sluice", true},
		{"/eks/${kubernetes.namespace_name}", "t", "/eks/shop", true},
		{"${kubernetes.pod_name}.${ kubernetes.labels.app }", "t", "web-1.web", true},
		{"logs-${tag}", "kube.var.log", "logs-kube.var.log", true},
		{"${tag[0]}-${tag[2]}", "kube.var.log", "kube-log", true},
		{"${tag[3]}", "kube.var.log", "", false},
		{"${code}/${neg}/${ratio}/${ok}/${big}", "t", "503/-7/0.5/true/9223372036854775808", true},
		{"${nothing}", "t", "", false},
		{"${list}", "t", "", false},
		{"${kubernetes}", "t", "", false},
		{"${kubernetes.missing}", "t", "", false},
		{"${level.deeper}", "t", "", false},
		{"$$5 and $x", "t", "$5 and $x", true},
	}
	for _, c := range cases {
		tp, err := Parse(c.tpl)
		if err != nil {
			t.Fatalf("%q: %v", c.tpl, err)
		}
		got, ok := tp.Append([]byte("pre:"), c.tag, rec)
		if ok != c.ok || (ok && string(got) != "pre:"+c.want) || (!ok && string(got) != "pre:") {
			t.Errorf("%q with tag %q = %q, %v; want %q, %v", c.tpl, c.tag, got, ok, c.want, c.ok)
		}
	}
}

func TestTemplateParseErrors(t *testing.T) {
	for tpl, want := range map[string]string{
		"a${b":       "unterminated",
		"${}":        "empty ${}",
		"${tag[x]}":  "tag part",
		"${tag[-1]}": "tag part",
		"${a..b}":    "empty part",
	} {
		_, err := Parse(tpl)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", tpl, err, want)
		}
	}
}

func TestTemplateStatic(t *testing.T) {
	if s, ok := MustParse("a$$b").Static(); !ok || s != "a$b" {
		t.Errorf("static = %q, %v", s, ok)
	}
	if _, ok := MustParse("a${tag}").Static(); ok {
		t.Error("a template with ${tag} is not static")
	}
	if MustParse("a${tag}").UsesRecord() || !MustParse("${x}").UsesRecord() {
		t.Error("UsesRecord is wrong")
	}
}

func TestLayout(t *testing.T) {
	tm := time.Date(2026, 3, 7, 4, 5, 6, 0, time.UTC)
	cases := map[string]string{
		"%Y.%m.%d":          "2026.03.07",
		"logs/%Y/%m/%d/%H/": "logs/2026/03/07/04/",
		"%y%j %M:%S %s %%":  "26066 05:06 1772856306 %",
	}
	for layout, want := range cases {
		l, err := ParseLayout(layout)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(l.Append(nil, tm)); got != want {
			t.Errorf("%q = %q, want %q", layout, got, want)
		}
	}
	for _, bad := range []string{"%Q", "abc%"} {
		if _, err := ParseLayout(bad); err == nil {
			t.Errorf("ParseLayout(%q) succeeded", bad)
		}
	}
}

// The cache must give what formatting each time would, across day, hour and
// DST boundaries and in zones with half-hour offsets.
func TestCacheAgreesWithFormatting(t *testing.T) {
	zones := []string{"UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"}
	for _, layout := range []string{"%Y.%m.%d", "%Y-%m-%d-%H", "%H:%M"} {
		l, err := ParseLayout(layout)
		if err != nil {
			t.Fatal(err)
		}
		for _, z := range zones {
			loc, err := time.LoadLocation(z)
			if err != nil {
				t.Fatal(err)
			}
			c := NewCache(l, loc)
			// Around the 2026 DST changes, in 7-minute steps, forwards
			// and then backwards.
			start := time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC).Unix()
			var secs []int64
			for s := start; s < start+3*86400; s += 7 * 60 {
				secs = append(secs, s)
			}
			for i := len(secs) - 1; i >= 0; i-- {
				secs = append(secs, secs[i])
			}
			for _, s := range secs {
				want := string(l.Append(nil, time.Unix(s, 0).In(loc)))
				if got := string(c.Format(s)); got != want {
					t.Fatalf("%s %s at %d: cache %q, formatting %q", layout, z, s, got, want)
				}
			}
		}
	}
}
