package parser

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"

	"github.com/sluicelog/sluice/internal/msgp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// decodePairs decodes n msgpack key/value pairs into a map, failing on
// non-str keys, duplicate keys or bytes left over. Integers come back as
// int64 (uint64 above MaxInt64).
func decodePairs(t testing.TB, b []byte, n int) map[string]any {
	t.Helper()
	wrapped := append(msgp.AppendMapHeader(nil, n), b...)
	end, err := msgp.Skip(wrapped, 0)
	if err != nil || end != len(wrapped) {
		t.Fatalf("not exactly %d pairs: end %d of %d: %v", n, end, len(wrapped), err)
	}
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	m := make(map[string]any, n)
	for i := 0; i < n; i++ {
		k, err := dec.DecodeString()
		if err != nil {
			t.Fatalf("pair %d: key: %v", i, err)
		}
		v, err := dec.DecodeInterface()
		if err != nil {
			t.Fatalf("pair %d (%s): value: %v", i, k, err)
		}
		if _, dup := m[k]; dup {
			t.Fatalf("duplicate key %q", k)
		}
		m[k] = normalize(v)
	}
	return m
}

func normalize(v any) any {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	}
	return v
}

func mustRegistry(t testing.TB) *Registry {
	t.Helper()
	r, err := NewRegistry(nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// fixedNow is the clock for formats without a year.
var fixedNow = mustTime("2026-03-01T12:00:00Z")

type sample struct {
	parser string
	line   string
	want   map[string]any
	time   string // RFC 3339, or "" for no time
}

const nginxSeed = `10.1.128.166 - - [19/Dec/2019:17:41:12 +0000] "GET / HTTP/1.1" 200 612 "-" "hey/0.0.1" "52.95.4.2"`

var samples = []sample{
	{
		// The seed's nginx example: exactly these fields, all strings.
		parser: "nginx",
		line:   nginxSeed + "\n",
		want: map[string]any{"agent": "hey/0.0.1", "code": "200", "host": "-", "method": "GET", "path": "/",
			"referer": "-", "remote": "10.1.128.166", "size": "612", "user": "-"},
		time: "2019-12-19T17:41:12Z",
	},
	{
		parser: "nginx",
		line:   `192.168.1.5 - alice [03/Jan/2024:08:15:30 +0100] "POST /api/login?next=%2F HTTP/2.0" 401 53 "https://example.com/" "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"`,
		want: map[string]any{"remote": "192.168.1.5", "host": "-", "user": "alice", "method": "POST", "path": "/api/login?next=%2F",
			"code": "401", "size": "53", "referer": "https://example.com/", "agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"},
		time: "2024-01-03T07:15:30Z",
	},
	{
		parser: "apache2",
		line:   `192.168.2.20 - - [28/Jul/2006:10:27:10 -0300] "GET /cgi-bin/try/ HTTP/1.0" 200 3395 "http://example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav) \"quoted\""`,
		want: map[string]any{"host": "192.168.2.20", "user": "-", "method": "GET", "path": "/cgi-bin/try/", "code": "200",
			"size": "3395", "referer": "http://example.com/start.html", "agent": `Mozilla/4.08 [en] (Win98; I ;Nav) \"quoted\"`},
		time: "2006-07-28T13:27:10Z",
	},
	{
		// Common log format: no referer and agent, which are left out.
		parser: "apache",
		line:   `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`,
		want: map[string]any{"host": "127.0.0.1", "user": "frank", "method": "GET", "path": "/apache_pb.gif",
			"code": "200", "size": "2326"},
		time: "2000-10-10T20:55:36Z",
	},
	{
		// No Time_Format: the time is not RFC 3339 and stays a string; pid
		// is unmatched and left out.
		parser: "apache_error",
		line:   `[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: /export/home/live/ap/htdocs/test`,
		want: map[string]any{"time": "Oct 11 14:32:52 2000", "level": "error", "client": "127.0.0.1",
			"message": "client denied by server configuration: /export/home/live/ap/htdocs/test"},
	},
	{
		parser: "apache_error",
		line:   `[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187] File does not exist: /usr/local/apache2/htdocs/favicon.ico`,
		want: map[string]any{"time": "Sep 09 10:42:29.902022 2011", "level": "core:error", "pid": "35708:tid 4328636416",
			"client": "72.15.99.187", "message": "File does not exist: /usr/local/apache2/htdocs/favicon.ico"},
	},
	{
		parser: "syslog-rfc3164",
		line:   `<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8`,
		want: map[string]any{"pri": "34", "time": "Oct 11 22:14:15", "host": "mymachine", "ident": "su",
			"message": "'su root' failed for lonvick on /dev/pts/8"},
		time: "2025-10-11T22:14:15Z", // the year closest to fixedNow
	},
	{
		parser: "syslog-rfc3164",
		line:   `<13>Feb  5 17:32:18 10.0.0.99 myproc[8710]: Use the BFG!`,
		want: map[string]any{"pri": "13", "time": "Feb  5 17:32:18", "host": "10.0.0.99", "ident": "myproc", "pid": "8710",
			"message": "Use the BFG!"},
		time: "2026-02-05T17:32:18Z",
	},
	{
		parser: "syslog-rfc3164-local",
		line:   `<13>Feb 28 23:59:01 sshd[1234]: Accepted publickey for root`,
		want: map[string]any{"pri": "13", "time": "Feb 28 23:59:01", "ident": "sshd", "pid": "1234",
			"message": "Accepted publickey for root"},
		time: "2026-02-28T23:59:01Z",
	},
	{
		parser: "syslog-rfc5424",
		line:   `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry...`,
		want: map[string]any{"pri": "165", "time": "2003-10-11T22:14:15.003Z", "host": "mymachine.example.com",
			"ident": "evntslog", "pid": "-", "msgid": "ID47",
			"extradata": `[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]`,
			"message":   "An application event log entry..."},
		time: "2003-10-11T22:14:15.003Z",
	},
	{
		parser: "syslog-rfc5424",
		line:   `<34>1 2003-10-11T22:14:15.003-07:00 mymachine.example.com su 1234 ID47 - 'su root' failed`,
		want: map[string]any{"pri": "34", "time": "2003-10-11T22:14:15.003-07:00", "host": "mymachine.example.com",
			"ident": "su", "pid": "1234", "msgid": "ID47", "extradata": "-", "message": "'su root' failed"},
		time: "2003-10-12T05:14:15.003Z",
	},
	{
		parser: "logfmt",
		line:   `level=info msg="hello world" took=1.5ms count=3`,
		want:   map[string]any{"level": "info", "msg": "hello world", "took": "1.5ms", "count": "3"},
	},
	{
		parser: "logfmt",
		line:   `at=info method=GET path=/?a=b debug esc="say \"hi\"\n\u00e9" empty= quoted=""` + "\n",
		want: map[string]any{"at": "info", "method": "GET", "path": "/?a=b", "debug": true,
			"esc": "say \"hi\"\né", "empty": "", "quoted": ""},
	},
	{
		parser: "docker",
		line:   `{"log":"hello\n","stream":"stdout","time":"2019-12-19T17:41:12.70630778Z"}` + "\n",
		want:   map[string]any{"log": "hello\n", "stream": "stdout", "time": "2019-12-19T17:41:12.70630778Z"},
		time:   "2019-12-19T17:41:12.70630778Z",
	},
	{
		parser: "docker-daemon",
		line:   `time="2019-12-19T17:41:12.706307780Z" level=info msg="Loading containers: start."`,
		want:   map[string]any{"time": "2019-12-19T17:41:12.706307780Z", "level": "info", "msg": "Loading containers: start."},
		time:   "2019-12-19T17:41:12.70630778Z",
	},
	{
		parser: "cri",
		line:   `2019-12-19T17:41:12.706307780Z stdout F hello world`,
		want:   map[string]any{"time": "2019-12-19T17:41:12.706307780Z", "stream": "stdout", "logtag": "F", "message": "hello world"},
		time:   "2019-12-19T17:41:12.70630778Z",
	},
	{
		parser: "cri",
		line:   "2023-06-01T10:00:00.123456789+02:00 stderr P partial line \n",
		want:   map[string]any{"time": "2023-06-01T10:00:00.123456789+02:00", "stream": "stderr", "logtag": "P", "message": "partial line "},
		time:   "2023-06-01T08:00:00.123456789Z",
	},
	{
		// Time_Format matches: the time is consumed (Time_Keep off).
		parser: "json",
		line:   `{"level":"info","time":"19/Dec/2019:17:41:12 +0000","n":1,"f":1.5,"ok":true,"x":null,"o":{"a":[1,"b"]}}`,
		want: map[string]any{"level": "info", "n": int64(1), "f": 1.5, "ok": true, "x": nil,
			"o": map[string]any{"a": []any{int64(1), "b"}}},
		time: "2019-12-19T17:41:12Z",
	},
	{
		// Time_Format does not match: the time stays a string.
		parser: "json",
		line:   `{"level":"info","msg":"started","time":"2026-01-02T03:04:05Z"}`,
		want:   map[string]any{"level": "info", "msg": "started", "time": "2026-01-02T03:04:05Z"},
	},
	{
		parser: "k8s-nginx-ingress",
		line:   `10.244.0.1 - - [19/Dec/2019:17:41:12 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.17" 112 0.001 [default-app-80] [] 10.244.0.5:8080 2 0.001 200 7c8e4a0b9d1e2f3a4b5c6d7e8f9a0b1c`,
		want: map[string]any{"host": "10.244.0.1", "user": "-", "method": "GET", "path": "/healthz", "code": "200",
			"size": "2", "referer": "-", "agent": "kube-probe/1.17", "request_length": "112", "request_time": "0.001",
			"proxy_upstream_name": "default-app-80", "upstream_addr": "10.244.0.5:8080", "upstream_response_length": "2",
			"upstream_response_time": "0.001", "upstream_status": "200", "reg_id": "7c8e4a0b9d1e2f3a4b5c6d7e8f9a0b1c"},
		time: "2019-12-19T17:41:12Z",
	},
}

func TestBuiltinSamples(t *testing.T) {
	r := mustRegistry(t)
	covered := make(map[string]bool)
	for i, s := range samples {
		t.Run(fmt.Sprintf("%d_%s", i, s.parser), func(t *testing.T) {
			p, ok := r.Get(s.parser)
			if !ok {
				t.Fatalf("no builtin %s", s.parser)
			}
			p.now = func() time.Time { return fixedNow }
			covered[s.parser] = true
			dst := []byte("prefix")
			out, n, tm, hasTime, err := p.Parse(dst, []byte(s.line))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if string(out[:6]) != "prefix" {
				t.Fatalf("prefix overwritten")
			}
			got := decodePairs(t, out[6:], n)
			if !reflect.DeepEqual(got, s.want) {
				t.Errorf("fields:\n got %#v\nwant %#v", got, s.want)
			}
			if s.time == "" {
				if hasTime {
					t.Errorf("time %v, want none", tm)
				}
				return
			}
			if !hasTime || !tm.Equal(mustTime(s.time)) {
				t.Errorf("time %v (%v), want %s", tm, hasTime, s.time)
			}
		})
	}
	for _, c := range Builtins() {
		if !covered[c.Name] {
			t.Errorf("builtin %s has no sample", c.Name)
		}
	}
}

func TestBuiltinNames(t *testing.T) {
	r := mustRegistry(t)
	for _, name := range []string{"json", "docker", "cri", "nginx", "apache", "apache2", "apache_error",
		"syslog-rfc3164", "syslog-rfc5424", "logfmt"} {
		p, ok := r.Get(name)
		if !ok || p.Name() != name {
			t.Errorf("Get(%q) = %v, %v", name, p, ok)
		}
	}
	if _, ok := r.Get("nope"); ok {
		t.Error("Get(nope) found a parser")
	}
}

var garbage = []string{
	"",
	"\n",
	"this is not a log line",
	"\x00\xff\xfe garbage \x01",
	"{broken json",
	`{"a":1`,
	"[1,2,3]",
	`"just a string"`,
	"[19/Dec/2019] nonsense",
	"<34>",
	"<34>1 no",
	"2019-12-19T17:41:12Z stdlog F wrong stream",
	`key="unterminated`,
	strings.Repeat("x", 5000),
}

func TestMalformed(t *testing.T) {
	r := mustRegistry(t)
	for _, c := range Builtins() {
		p, _ := r.Get(c.Name)
		for _, g := range garbage {
			dst := make([]byte, 3, 64)
			copy(dst, "abc")
			out, n, _, hasTime, err := p.Parse(dst, []byte(g))
			if !errors.Is(err, ErrNoMatch) {
				t.Errorf("%s on %.30q: err %v, want ErrNoMatch", c.Name, g, err)
			}
			if len(out) != 3 || string(out) != "abc" || n != 0 || hasTime {
				t.Errorf("%s on %.30q: dst changed to %q (n=%d)", c.Name, g, out, n)
			}
		}
	}
}

func TestLogfmtMalformed(t *testing.T) {
	p, err := New(Config{Name: "l", Format: FormatLogfmt})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{`a="x"b`, `a=x"y`, `"a"=1`, `a=1 b"c=2`, `just words`, `=value`} {
		if _, _, _, _, err := p.Parse(nil, []byte(g)); !errors.Is(err, ErrNoMatch) {
			t.Errorf("%q: err %v, want ErrNoMatch", g, err)
		}
	}
}

func TestTimeKeep(t *testing.T) {
	for _, keep := range []bool{false, true} {
		c := Builtins()[3] // nginx
		if c.Name != "nginx" {
			t.Fatal("builtin order changed")
		}
		c.TimeKeep = keep
		p, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		out, n, tm, hasTime, err := p.Parse(nil, []byte(nginxSeed))
		if err != nil || !hasTime || !tm.Equal(mustTime("2019-12-19T17:41:12Z")) {
			t.Fatalf("keep=%v: %v %v %v", keep, tm, hasTime, err)
		}
		got := decodePairs(t, out, n)
		if v, ok := got["time"]; ok != keep || keep && v != "19/Dec/2019:17:41:12 +0000" {
			t.Errorf("keep=%v: time field %v %v", keep, v, ok)
		}
	}
	// json and logfmt alike.
	for _, c := range []Config{
		{Name: "j", Format: FormatJSON, TimeKey: "ts", TimeFormat: "%s"},
		{Name: "j", Format: FormatJSON, TimeKey: "ts", TimeFormat: "%s", TimeKeep: true},
		{Name: "l", Format: FormatLogfmt, TimeKey: "ts", TimeFormat: "%s"},
		{Name: "l", Format: FormatLogfmt, TimeKey: "ts", TimeFormat: "%s", TimeKeep: true},
	} {
		p, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		line := `{"a":"b","ts":"1576777272","c":1}`
		if c.Format == FormatLogfmt {
			line = `a=b ts=1576777272 c=1`
		}
		out, n, tm, hasTime, err := p.Parse(nil, []byte(line))
		if err != nil || !hasTime || tm.Unix() != 1576777272 {
			t.Fatalf("%+v: %v %v %v", c, tm, hasTime, err)
		}
		got := decodePairs(t, out, n)
		if _, ok := got["ts"]; ok != c.TimeKeep || len(got) != 2+boolInt(c.TimeKeep) {
			t.Errorf("%+v: %v", c, got)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestDefaultTimeKey(t *testing.T) {
	// A regex parser defaults to time key "time" and RFC 3339.
	p, err := New(Config{Name: "r", Format: FormatRegex, Regex: `^(?<time>\S+) (?<msg>.*)$`})
	if err != nil {
		t.Fatal(err)
	}
	out, n, tm, hasTime, err := p.Parse(nil, []byte("2024-05-06T07:08:09.5+02:00 hello"))
	if err != nil || !hasTime || !tm.Equal(mustTime("2024-05-06T05:08:09.5Z")) {
		t.Fatalf("%v %v %v", tm, hasTime, err)
	}
	if got := decodePairs(t, out, n); !reflect.DeepEqual(got, map[string]any{"msg": "hello"}) {
		t.Errorf("%v", got)
	}
	// A json parser with neither key nor format has no time handling.
	p, err = New(Config{Name: "j", Format: FormatJSON})
	if err != nil {
		t.Fatal(err)
	}
	out, n, _, hasTime, err = p.Parse(nil, []byte(`{"time":"2024-05-06T07:08:09Z"}`))
	if err != nil || hasTime || n != 1 || len(decodePairs(t, out, n)) != 1 {
		t.Fatalf("json without time config: %v %v %v", n, hasTime, err)
	}
}

func TestTypes(t *testing.T) {
	const types = "code:integer size:integer ratio:float ok:bool id:hex name:string"
	want := map[string]any{"code": int64(200), "size": "notanint", "ratio": 0.5, "ok": true, "id": int64(31),
		"name": "007", "neg": "-3"}
	cases := []struct {
		c    Config
		line string
	}{
		{Config{Name: "r", Format: FormatRegex, Types: types,
			Regex: `^(?<code>\S+) (?<size>\S+) (?<ratio>\S+) (?<ok>\S+) (?<id>\S+) (?<name>\S+) (?<neg>\S+)$`},
			"200 notanint 0.5 TRUE 0x1F 007 -3"},
		{Config{Name: "l", Format: FormatLogfmt, Types: types},
			`code=200 size=notanint ratio="0.5" ok=TRUE id=0x1F name=007 neg=-3`},
		{Config{Name: "j", Format: FormatJSON, Types: types},
			`{"code":"200","size":"notanint","ratio":"0.5","ok":"TRUE","id":"1f","name":"007","neg":"-3"}`},
	}
	for _, tc := range cases {
		p, err := New(tc.c)
		if err != nil {
			t.Fatal(err)
		}
		out, n, _, _, err := p.Parse([]byte("pre"), []byte(tc.line))
		if err != nil {
			t.Fatalf("%s: %v", tc.c.Format, err)
		}
		if got := decodePairs(t, out[3:], n); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %#v\nwant %#v", tc.c.Format, got, want)
		}
	}
	// JSON values that are already numbers are left alone; a converted
	// value that grows (a one-byte str to a float64) shifts what follows.
	p, err := New(Config{Name: "j", Format: FormatJSON, Types: "a:float b:integer"})
	if err != nil {
		t.Fatal(err)
	}
	out, n, _, _, err := p.Parse(nil, []byte(`{"a":"1","b":7,"c":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := decodePairs(t, out, n); !reflect.DeepEqual(got, map[string]any{"a": 1.0, "b": int64(7), "c": "x"}) {
		t.Errorf("%#v", got)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		c      Config
		prefix string
	}{
		{Config{Format: FormatJSON}, "name:"},
		{Config{Name: "x"}, "format:"},
		{Config{Name: "x", Format: "xml"}, "format:"},
		{Config{Name: "x", Format: FormatRegex}, "regex:"},
		{Config{Name: "x", Format: FormatRegex, Regex: `(?<a>x`}, "regex:"},
		{Config{Name: "x", Format: FormatRegex, Regex: `^\d+$`}, "regex:"},
		{Config{Name: "x", Format: FormatJSON, Regex: `(?<a>x)`}, "regex:"},
		{Config{Name: "x", Format: FormatRegex, Regex: `/(?<a>x)/x`}, "regex:"},
		{Config{Name: "x", Format: FormatJSON, TimeFormat: "%Y-%Q"}, "time_format:"},
		{Config{Name: "x", Format: FormatJSON, TimeFormat: "%Y%"}, "time_format:"},
		{Config{Name: "x", Format: FormatJSON, Types: "code"}, "types:"},
		{Config{Name: "x", Format: FormatJSON, Types: "code:int"}, "types:"},
		{Config{Name: "x", Format: FormatJSON, Types: ":integer"}, "types:"},
	}
	for _, tc := range cases {
		err := tc.c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.prefix) {
			t.Errorf("%+v: %v, want %q...", tc.c, err, tc.prefix)
		}
	}
	for _, c := range Builtins() {
		if err := c.Validate(); err != nil {
			t.Errorf("builtin %s: %v", c.Name, err)
		}
	}
	ok := Config{Name: "x", Format: FormatRegex, Regex: `/^(?<a>X)$/i`, TimeFormat: "%F %T", Types: "a:string"}
	if err := ok.Validate(); err != nil {
		t.Errorf("%+v: %v", ok, err)
	}
}

func TestRegistry(t *testing.T) {
	_, err := NewRegistry([]Config{
		{Name: "a", Format: FormatJSON},
		{Name: "b", Format: FormatLogfmt},
		{Name: "myapp", Format: FormatRegex, Regex: `(?<a>`},
	})
	if err == nil || !strings.HasPrefix(err.Error(), "parsers[2] (myapp): regex: ") {
		t.Errorf("error %v", err)
	}
	_, err = NewRegistry([]Config{{Name: "a", Format: FormatJSON}, {Name: "a", Format: FormatJSON}})
	if err == nil || !strings.HasPrefix(err.Error(), "parsers[1] (a): name: ") {
		t.Errorf("duplicate: %v", err)
	}
	r, err := NewRegistry([]Config{
		{Name: "nginx", Format: FormatJSON},
		{Name: "myapp", Format: FormatRegex, Regex: `^(?<level>\w+): (?<msg>.*)$`},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := r.Get("nginx")
	if _, _, _, _, err := p.Parse(nil, []byte(`{"a":1}`)); err != nil {
		t.Errorf("custom nginx does not replace the builtin: %v", err)
	}
	p, ok := r.Get("myapp")
	if !ok {
		t.Fatal("myapp missing")
	}
	out, n, _, _, err := p.Parse(nil, []byte("WARN: disk full"))
	if err != nil || !reflect.DeepEqual(decodePairs(t, out, n), map[string]any{"level": "WARN", "msg": "disk full"}) {
		t.Errorf("myapp: %v", err)
	}
}

func TestTimeFormats(t *testing.T) {
	cases := []struct {
		format, in, want string // want "" means no parse
	}{
		{"%d/%b/%Y:%H:%M:%S %z", "19/Dec/2019:17:41:12 +0000", "2019-12-19T17:41:12Z"},
		{"%d/%b/%Y:%H:%M:%S %z", "19/dec/2019:17:41:12 -0130", "2019-12-19T19:11:12Z"},
		{"%Y-%m-%dT%H:%M:%S%z", "2019-12-19T17:41:12+09:00", "2019-12-19T08:41:12Z"},
		{"%Y-%m-%dT%H:%M:%S%z", "2019-12-19T17:41:12+09", "2019-12-19T08:41:12Z"},
		{"%Y-%m-%dT%H:%M:%S.%L%z", "2019-12-19T17:41:12.123+0000", "2019-12-19T17:41:12.123Z"},
		{"%Y-%m-%dT%H:%M:%S.%L%z", "2019-12-19T17:41:12.706307780Z", "2019-12-19T17:41:12.70630778Z"},
		{"%Y-%m-%dT%H:%M:%S.%L%z", "2019-12-19T17:41:12Z", "2019-12-19T17:41:12Z"}, // no fraction
		{"%Y-%m-%dT%H:%M:%S.%L", "2019-12-19T17:41:12.70630778Z", "2019-12-19T17:41:12.70630778Z"},
		{"%Y-%m-%dT%H:%M:%S.%L", "2019-12-19T17:41:12.123456789123", "2019-12-19T17:41:12.123456789Z"},
		{"%Y-%m-%d %H:%M:%S,%L", "2019-12-19 17:41:12,5", "2019-12-19T17:41:12.5Z"},
		{"%s", "1576777272", "2019-12-19T17:41:12Z"},
		{"%s.%L", "1576777272.25", "2019-12-19T17:41:12.25Z"},
		{"%Y-%m-%d %H:%M:%S %Z", "2019-12-19 17:41:12 UTC", "2019-12-19T17:41:12Z"},
		{"%Y-%m-%d %H:%M:%S %Z", "2019-12-19 17:41:12 CEST", ""},
		{"%a, %d %b %Y %T %z", "Thu, 19 Dec 2019 17:41:12 +0000", "2019-12-19T17:41:12Z"},
		{"%A %B %e %T %Y", "Thursday December  9 17:41:12 2019", "2019-12-09T17:41:12Z"},
		{"%F %T", "2019-12-19 17:41:12", "2019-12-19T17:41:12Z"},
		{"%Y %j", "2020 366", "2020-12-31T00:00:00Z"},
		{"%Y %j", "2019 366", ""},
		{"%D %r", "12/19/19 05:41:12 PM", "2019-12-19T17:41:12Z"},
		{"%D %r", "12/19/70 12:00:00 AM", "1970-12-19T00:00:00Z"},
		{"%d/%b/%Y:%H:%M:%S %z", "31/Apr/2019:00:00:00 +0000", ""},
		{"%d/%b/%Y:%H:%M:%S %z", "19/Foo/2019:00:00:00 +0000", ""},
		{"%d/%b/%Y:%H:%M:%S %z", "19/Dec/2019:25:00:00 +0000", ""},
		{"%d/%b/%Y:%H:%M:%S %z", "19/Dec/2019:17:41:12 +2500", ""},
		{"%Y-%m-%d", "abcd-12-19", ""},
		{"%Y-%m-%d", "", ""},
		{"%Y%%%m", "2019%12", "2019-12-01T00:00:00Z"},
	}
	for _, tc := range cases {
		tf, err := compileTimeFormat(tc.format)
		if err != nil {
			t.Fatalf("%q: %v", tc.format, err)
		}
		got, ok := tf.parse([]byte(tc.in), func() time.Time { return fixedNow })
		if tc.want == "" {
			if ok {
				t.Errorf("%q on %q: %v, want no parse", tc.format, tc.in, got)
			}
			continue
		}
		if !ok || !got.Equal(mustTime(tc.want)) {
			t.Errorf("%q on %q: %v %v, want %s", tc.format, tc.in, got, ok, tc.want)
		}
	}
}

func TestRFC3339Default(t *testing.T) {
	for in, want := range map[string]string{
		"2019-12-19T17:41:12Z":          "2019-12-19T17:41:12Z",
		"2019-12-19t17:41:12.5+01:00":   "2019-12-19T16:41:12.5Z",
		"2019-12-19 17:41:12.123456789": "2019-12-19T17:41:12.123456789Z",
		"2019-12-19T17:41:12Zjunk":      "",
		"19/Dec/2019:17:41:12 +0000":    "",
		"2019-13-19T17:41:12Z":          "",
	} {
		got, ok := rfc3339Format.parse([]byte(in), time.Now)
		if want == "" {
			if ok {
				t.Errorf("%q: %v, want no parse", in, got)
			}
			continue
		}
		if !ok || !got.Equal(mustTime(want)) {
			t.Errorf("%q: %v %v, want %s", in, got, ok, want)
		}
	}
}

func TestYearlessRollover(t *testing.T) {
	tf, err := compileTimeFormat("%b %d %H:%M:%S")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ now, in, want string }{
		// A December line read just after New Year belongs to last year.
		{"2026-01-01T00:10:00Z", "Dec 31 23:59:59", "2025-12-31T23:59:59Z"},
		// A sender whose clock is a little ahead across New Year.
		{"2025-12-31T23:59:00Z", "Jan  1 00:00:30", "2026-01-01T00:00:30Z"},
		{"2026-07-15T00:00:00Z", "Jul 14 10:00:00", "2026-07-14T10:00:00Z"},
		// 29 February exists only in leap years.
		{"2028-03-01T00:00:00Z", "Feb 29 12:00:00", "2028-02-29T12:00:00Z"},
		{"2026-03-01T00:00:00Z", "Feb 29 12:00:00", ""}, // no leap year near: no time
	}
	for _, tc := range cases {
		now := mustTime(tc.now)
		got, ok := tf.parse([]byte(tc.in), func() time.Time { return now })
		if tc.want == "" {
			if ok {
				t.Errorf("now %s, %q: %v, want no parse", tc.now, tc.in, got)
			}
			continue
		}
		if !ok || !got.Equal(mustTime(tc.want)) {
			t.Errorf("now %s, %q: %v %v, want %s", tc.now, tc.in, got, ok, tc.want)
		}
	}
}

func TestTranslateRegex(t *testing.T) {
	for in, want := range map[string]string{
		`^\<(?<pri>\d+)\>`: `^<(?<pri>\d+)>`,
		`/^(?<a>x)$/`:      `^(?<a>x)$`,
		`/^(?<a>x)$/im`:    `(?i)(?s)^(?<a>x)$`,
		`a/b`:              `a/b`,
		`\\<`:              `\\<`,
	} {
		got, err := translateRegex(in)
		if err != nil || got != want {
			t.Errorf("translateRegex(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	r := mustRegistry(t)
	for name, line := range map[string]string{
		"json":   benchJSON,
		"docker": `{"log":"hello\n","stream":"stdout","time":"2019-12-19T17:41:12.70630778Z"}`,
		"logfmt": `level=info msg="hello world" took=1.5ms count=3`,
		"cri":    "2019-12-19T17:41:12.706307780Z stdout F hello world",
	} {
		p, _ := r.Get(name)
		dst := make([]byte, 0, 1024)
		src := []byte(line)
		allocs := testing.AllocsPerRun(100, func() {
			if _, _, _, _, err := p.Parse(dst[:0], src); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per Parse", name, allocs)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range samples {
		f.Add([]byte(s.line))
	}
	for _, g := range garbage {
		f.Add([]byte(g))
	}
	f.Add([]byte(benchJSON))
	r, err := NewRegistry(nil)
	if err != nil {
		f.Fatal(err)
	}
	var parsers []*Parser
	for _, c := range Builtins() {
		p, _ := r.Get(c.Name)
		parsers = append(parsers, p)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, p := range parsers {
			if p.match != matchRegexp {
				// The hand-written matcher agrees with the regexp.
				l := trimNewline(line)
				want, got := p.re.FindSubmatchIndex(l), fastLoc(p, l)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: matcher %v, regexp %v", p.Name(), got, want)
				}
			}
			dst := append(make([]byte, 0, 8), "pre"...)
			out, n, _, _, err := p.Parse(dst, line)
			if err != nil {
				if !errors.Is(err, ErrNoMatch) || len(out) != 3 || n != 0 {
					t.Fatalf("%s: err %v, out %q", p.Name(), err, out)
				}
				continue
			}
			if string(out[:3]) != "pre" {
				t.Fatalf("%s: prefix changed", p.Name())
			}
			b := out[3:]
			off := 0
			for i := 0; i < n; i++ {
				if _, off, err = msgp.ReadStr(b, off); err != nil {
					t.Fatalf("%s: pair %d key: %v", p.Name(), i, err)
				}
				if off, err = msgp.Skip(b, off); err != nil {
					t.Fatalf("%s: pair %d value: %v", p.Name(), i, err)
				}
			}
			if off != len(b) {
				t.Fatalf("%s: %d bytes after %d pairs", p.Name(), len(b)-off, n)
			}
		}
	})
}

const benchJSON = `{"level":"info","msg":"request completed","time":"2026-03-14T09:26:53.589793238Z","user_id":123,` +
	`"latency_ms":12.5,"path":"/api/v1/orders/8f14e45f","method":"GET","status":200,"bytes":5120,` +
	`"remote":"10.1.128.166","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","ok":true}`

func benchParse(b *testing.B, name, line string) {
	r := mustRegistry(b)
	p, _ := r.Get(name)
	src := []byte(line)
	dst := make([]byte, 0, 1024)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, _, _, _, err = p.Parse(dst[:0], src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseNginx(b *testing.B)  { benchParse(b, "nginx", nginxSeed+"\n") }
func BenchmarkParseApache(b *testing.B) { benchParse(b, "apache", sampleLine("apache")) }
func BenchmarkParseJSON(b *testing.B)   { benchParse(b, "json", benchJSON) }
func BenchmarkParseDocker(b *testing.B) { benchParse(b, "docker", sampleLine("docker")) }
func BenchmarkParseCRI(b *testing.B) {
	benchParse(b, "cri", "2019-12-19T17:41:12.706307780Z stdout F "+benchJSON)
}
func BenchmarkParseLogfmt(b *testing.B) {
	benchParse(b, "logfmt", `ts=2026-03-14T09:26:53.589Z level=info msg="request completed" path=/api/v1/orders/8f14e45f status=200 took=12.5ms`)
}
func BenchmarkParseSyslog5424(b *testing.B) {
	benchParse(b, "syslog-rfc5424", sampleLine("syslog-rfc5424"))
}

// sampleLine returns the first sample line of the named parser.
func sampleLine(parser string) string {
	for _, s := range samples {
		if s.parser == parser {
			return s.line
		}
	}
	return ""
}

func TestCRIMatcher(t *testing.T) {
	p, _ := mustRegistry(t).Get("cri")
	if p.match == matchRegexp {
		t.Fatal("cri has no fast matcher")
	}
	for _, line := range []string{
		"t stdout F m", "t stderr P ", "t stdout  m", "t stdout F", "t stdoutx F m", " stdout F m",
		"a\nb stdout F m", "t stdout F m\nx", "t stdout F\nm", "t stdout F\n x", "t  stdout F m",
		"t stdout F m m m", "t stdin F m", "", "t", "t stdout", "t stdout ", "t\tstdout F m",
	} {
		want := p.re.FindSubmatchIndex([]byte(line))
		got := make([]int, 2*p.re.NumSubexp()+2)
		if p.match.match([]byte(line), got) != fastYes {
			got = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: matcher %v, regexp %v", line, got, want)
		}
	}
}

// fastLoc is what the parser's hand-written matcher finds in line, as
// FindSubmatchIndex gives it (the regexp's answer where the matcher is not
// sure).
func fastLoc(p *Parser, line []byte) []int {
	loc := make([]int, 2*p.re.NumSubexp()+2)
	switch p.match.match(line, loc) {
	case fastNo:
		return nil
	case fastUnsure:
		return p.re.FindSubmatchIndex(line)
	}
	return loc
}

// The nginx and apache matchers agree with their regexps on lines made to
// make the regexps backtrack: quotes, spaces and brackets in odd places.
func TestAccessMatchers(t *testing.T) {
	r := mustRegistry(t)
	for _, name := range []string{"nginx", "apache"} {
		p, _ := r.Get(name)
		if p.match == matchRegexp {
			t.Fatalf("%s has no fast matcher", name)
		}
		pre := `10.0.0.1 - - [01/Jan/2026:12:00:00 +0000] "`
		if name == "nginx" {
			pre = `10.0.0.1 host - [01/Jan/2026:12:00:00 +0000] "`
		}
		for _, req := range []string{
			`GET /a HTTP/1.1" 200 512 "-" "curl/8"`, `GET /a HTTP/1.1" 200 512`, `GET" 200 512 "-" "x"`,
			`GET /a b c" 200 5 "r" "a"`, `GET  /a  HTTP/1.1 " 200 5 "r" "a"`, `GET /a" 200 5 "r" "a" tail`,
			`GET /"a HTTP" 200 5 "r" "a"`, `GET /a HTTP/1.1"x" 200 5 "r" "a"`, `"" 200 5 "r" "a"`,
			`GET /a HTTP/1.1" 200 512 "-" "a"b"`, `GET /a HTTP/1.1" 200 512 "-"`, `GET /a HTTP/1.1" 200  512 "-" "a"`,
			`GET /a HTTP/1.1"  200 512 "-" "a"`, `GET	/a HTTP/1.1" 200 512 "-" "a"`, `GET /a HTTP/1.1" 200 512 "-" "a"` + "\n",
			`G"T /a" 200 1 "r" "a"`, `GET /a HTTP/1.1" 200 512 "-" "` + strings.Repeat(" ", 50) + `"`,
		} {
			line := []byte(pre + req)
			want, got := p.re.FindSubmatchIndex(line), fastLoc(p, line)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %q:\nmatcher %v\nregexp  %v", name, req, got, want)
			}
		}
	}
}

// Random requests built from the characters the regexps care about: the
// matchers agree with the regexps on every one (a fixed seed; 20,000 lines).
func TestAccessMatchersRandom(t *testing.T) {
	r := mustRegistry(t)
	rng := rand.New(rand.NewPCG(16, 17))
	matched := map[string]int{}
	tokens := []string{`"`, ` `, `  `, `a`, `/x`, `]`, `[`, `-`, `GET`, `HTTP/1.1`, "\t", "\n", `200`, `" "`, `" `,
		`" 200 5 "r" "a"`, `" 200 5`}
	for _, name := range []string{"nginx", "apache"} {
		p, _ := r.Get(name)
		pre := `1.2.3.4 - u [01/Jan/2026:12:00:00 +0000] "`
		if name == "nginx" {
			pre = `1.2.3.4 h u [01/Jan/2026:12:00:00 +0000] "`
		}
		for i := 0; i < 10000; i++ {
			var b strings.Builder
			b.WriteString(pre)
			for n := rng.IntN(14); n > 0; n-- {
				b.WriteString(tokens[rng.IntN(len(tokens))])
			}
			line := []byte(b.String())
			want, got := p.re.FindSubmatchIndex(line), fastLoc(p, line)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %q:\nmatcher %v\nregexp  %v", name, line[len(pre):], got, want)
			}
			if want != nil {
				matched[name]++
			}
		}
	}
	for name, n := range matched {
		if n < 500 {
			t.Errorf("%s: only %d of 10,000 random lines matched: too few to tell", name, n)
		}
	}
	if len(matched) != 2 {
		t.Errorf("matched %v", matched)
	}
	t.Logf("matched of 10,000: %v", matched)
}
