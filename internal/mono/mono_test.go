package mono

import (
	"testing"
	"time"
)

func TestNowMovesForward(t *testing.T) {
	a := Now()
	time.Sleep(2 * time.Millisecond)
	b := Now()
	if a <= 0 || b-a < int64(2*time.Millisecond) {
		t.Errorf("Now %d then %d after 2 ms", a, b)
	}
	if d := Since(a); d < 2*time.Millisecond {
		t.Errorf("Since %v, want at least 2ms", d)
	}
}
