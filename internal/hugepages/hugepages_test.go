package hugepages

import (
	"slices"
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		name, mode, godebug string
		limit               int64
		want                int64
		why                 bool
	}{
		{"madvise, no limit", "madvise", "", 0, DefaultBytes, false},
		{"madvise, a limit under the default", "madvise", "", 300 << 20, 300 << 20, false},
		{"madvise, a tiny limit", "madvise", "", 16 << 20, minBytes, false},
		{"madvise, a limit over the default", "madvise", "", 8 << 30, DefaultBytes, false},
		{"always", "always", "", 0, 0, true},
		{"never", "never", "", 0, 0, true},
		{"none", "", "", 0, 0, true},
		{"disablethp", "madvise", "gctrace=1, disablethp=1", 0, 0, true},
		{"other GODEBUG", "madvise", "disablethp=0,madvdontneed=1", 0, DefaultBytes, false},
	} {
		got, why := Plan(c.mode, c.godebug, c.limit)
		if got != c.want || (why != "") != c.why {
			t.Errorf("%s: Plan = %d, %q; want %d, a reason %v", c.name, got, why, c.want, c.why)
		}
	}
}

// The mode is the bracketed word of the sysfs list; no file or a garbled
// one is none.
func TestSelected(t *testing.T) {
	for list, want := range map[string]string{
		"always [madvise] never\n": "madvise",
		"[always] madvise never\n": "always",
		"always madvise [never]\n": "never",
		"":                         "",
		"always madvise":           "",
		"always [madvise":          "",
	} {
		if got := selected(list); got != want {
			t.Errorf("selected(%q) = %q, want %q", list, got, want)
		}
	}
}

func TestReadSmaps(t *testing.T) {
	const smaps = `00400000-022ad000 r-xp 00000000 fe:00 9994989                            /usr/bin/sluice
Size:              31412 kB
AnonHugePages:         0 kB
VmFlags: rd ex mr mw me sd
29743800000-29784400000 rw-p 00000000 00:00 0 
Size:            1060864 kB
AnonHugePages:     47104 kB
VmFlags: rd wr mr mw me ac sd hg
7f1d00000000-7f1d00021000 rw-p 00000000 00:00 0 
AnonHugePages:         0 kB
VmFlags: rd wr mr mw me nr sd
`
	got, err := ReadSmaps(strings.NewReader(smaps))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{
		{Start: 0x400000, End: 0x22ad000},
		{Start: 0x29743800000, End: 0x29784400000, Advised: true, AnonHugeKB: 47104},
		{Start: 0x7f1d00000000, End: 0x7f1d00021000},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ReadSmaps =\n%+v\nwant\n%+v", got, want)
	}
	if _, err := ReadSmaps(strings.NewReader("00400000-00401000 r-xp 0 0 0\nAnonHugePages: lots\n")); err == nil {
		t.Error("ReadSmaps accepted AnonHugePages: lots")
	}
}
