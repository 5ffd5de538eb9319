package bufpool

import "testing"

func TestClasses(t *testing.T) {
	for _, c := range []struct{ n, cap int }{
		{0, 4 << 10}, {1, 4 << 10}, {4 << 10, 4 << 10}, {4<<10 + 1, 8 << 10}, {1 << 20, 1 << 20}, {1<<20 + 1, 2 << 20},
		{64 << 20, 64 << 20}, {64<<20 + 1, 64<<20 + 1},
	} {
		b := Get(c.n)
		if len(b) != 0 || cap(b) != c.cap {
			t.Errorf("Get(%d): len %d cap %d, want 0 and %d", c.n, len(b), cap(b), c.cap)
		}
		Put(b)
	}
	// A buffer of no class size is not pooled; one of a class size is.
	Put(make([]byte, 10, 5000))
	b := Get(5000)
	if cap(b) != 8<<10 {
		t.Errorf("cap %d", cap(b))
	}
}

func TestAppendGrowsThroughThePool(t *testing.T) {
	b := GetPtr(10)
	var want []byte
	for i := 0; i < 3000; i++ {
		p := []byte{byte(i), byte(i >> 8), 7}
		Append(b, p)
		want = append(want, p...)
	}
	if string(*b) != string(want) || cap(*b) != 16<<10 {
		t.Fatalf("len %d cap %d, contents equal %v", len(*b), cap(*b), string(*b) == string(want))
	}
	PutPtr(b)
	PutPtr(nil)
}
