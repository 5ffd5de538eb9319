package hugepages

import "testing"

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		name, mode, godebug string
		limit               int64
		want                int64
		why                 bool
	}{
		{"madvise, no limit", "always [madvise] never\n", "", 0, DefaultBytes, false},
		{"madvise, a limit under the default", "always [madvise] never", "", 300 << 20, 300 << 20, false},
		{"madvise, a tiny limit", "always [madvise] never", "", 16 << 20, minBytes, false},
		{"madvise, a limit over the default", "always [madvise] never", "", 8 << 30, DefaultBytes, false},
		{"always", "[always] madvise never\n", "", 0, 0, true},
		{"never", "always madvise [never]\n", "", 0, 0, true},
		{"no file", "", "", 0, 0, true},
		{"garbled", "always madvise", "", 0, 0, true},
		{"disablethp", "always [madvise] never", "gctrace=1, disablethp=1", 0, 0, true},
		{"other GODEBUG", "always [madvise] never", "disablethp=0,madvdontneed=1", 0, DefaultBytes, false},
	} {
		got, why := Plan(c.mode, c.godebug, c.limit)
		if got != c.want || (why != "") != c.why {
			t.Errorf("%s: Plan = %d, %q; want %d, a reason %v", c.name, got, why, c.want, c.why)
		}
	}
}
