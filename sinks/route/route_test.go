package route

import (
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestPatterns(t *testing.T) {
	cases := []struct {
		pattern string
		match   []string
		miss    []string
	}{
		{"*", []string{"a", "kube"}, []string{"a.b", "a."}},
		{"a.*", []string{"a.b", "a.c"}, []string{"a", "a.b.c", "b.a"}},
		{"a.**", []string{"a", "a.b", "a.b.c"}, []string{"ab", "b.a"}},
		{"**", []string{"a", "a.b.c", ""}, nil},
		{"**.log", []string{"log", "kube.var.log"}, []string{"kube.var.logs", "log.x"}},
		{"kube.**.nginx", []string{"kube.nginx", "kube.a.b.nginx"}, []string{"kube.a.nginx.x"}},
		{"{a,b}", []string{"a", "b"}, []string{"c", "a.b"}},
		{"kube.{web,api}.*", []string{"kube.web.x", "kube.api.y"}, []string{"kube.db.x", "kube.web"}},
		{"{kube.**,sys.*}", []string{"kube", "kube.a.b", "sys.x"}, []string{"sys", "sys.a.b"}},
		{"app-*.{err{,or}s,warn}", []string{"app-web.errs", "app-.errors", "app-x.warn"}, []string{"app.errs", "app-web.err"}},
		{"kube.var.log.containers.web-*_shop_*", []string{"kube.var.log.containers.web-1_shop_nginx-0a"}, []string{"kube.var.log.containers.api-1_shop_x"}},
		{"a*b*c", []string{"abc", "aXbYc", "abbc"}, []string{"ab", "acb"}},
	}
	for _, c := range cases {
		m, err := Compile([]string{c.pattern})
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		for _, tag := range c.match {
			if !m.Match(tag) || !m.Match(tag) { // the second answer is cached
				t.Errorf("%q should match %q", c.pattern, tag)
			}
		}
		for _, tag := range c.miss {
			if m.Match(tag) || m.Match(tag) {
				t.Errorf("%q should not match %q", c.pattern, tag)
			}
		}
	}
	m, _ := Compile([]string{"a.*", "b.**"})
	if !m.Match("a.x") || !m.Match("b") || m.Match("c") {
		t.Error("several patterns: any one matches")
	}
	if m, _ := Compile(nil); !m.Match("anything.at.all") {
		t.Error("no pattern matches every tag")
	}
	for _, bad := range []string{"{a,b", "a}", "a,b", " "} {
		if _, err := Compile([]string{bad}); err == nil {
			t.Errorf("Compile(%q) succeeded", bad)
		}
	}
}

func rec(t *testing.T, v map[string]any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConditions(t *testing.T) {
	r := rec(t, map[string]any{"level": "error", "status": 503, "log": "panic: boom", "log.level": "x",
		"kubernetes": map[string]any{"namespace_name": "shop", "labels": map[string]any{"app": "web"}}})
	cases := map[string]bool{
		`level == "error"`:     true,
		`level == "info"`:      false,
		`status >= 500`:        true,
		`log contains "panic"`: true,
		`kubernetes.namespace_name in ["shop", "pay"]`:   true,
		`kubernetes.labels.app == "web" && status < 500`: false,
		`missing == nil`:                                       true,
		`tag startsWith "kube."`:                               true,
		`record["log.level"] == "x"`:                           true,
		`level == "error" || kubernetes.namespace_name == "x"`: true,
	}
	for src, want := range cases {
		c, err := CompileCondition(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got, err := c.Eval("kube.web", r)
		if err != nil || got != want {
			t.Errorf("%s = %v, %v; want %v", src, got, err, want)
		}
	}
	for _, bad := range []string{`level ==`, `"text"`, `1 +`} {
		if _, err := CompileCondition(bad); err == nil {
			t.Errorf("CompileCondition(%q) succeeded", bad)
		}
	}
	// Field types are known only at run time: a condition that gives no
	// boolean there is an error (the sink counts it and skips the record).
	if c, _ := CompileCondition(`status + 1`); c == nil {
		t.Fatal("status + 1 did not compile")
	} else if _, err := c.Eval("t", r); err == nil {
		t.Error("a condition that gives a number evaluated without an error")
	}
	c, _ := CompileCondition(`level > 3`)
	if _, err := c.Eval("t", r); err == nil || !strings.Contains(err.Error(), "invalid operation") {
		t.Errorf("a type error at run time: %v", err)
	}
	if _, err := c.Eval("t", []byte{0xc1}); err == nil {
		t.Error("a damaged record evaluated")
	}
}
