package loadtest_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/internal/vltest"
	"github.com/sluicelog/sluice/loadtest"
)

// The VictoriaLogs wait counts the run's rows, cheaply, until they are as
// many as were acknowledged, takes that moment as the end of the run, and
// only then counts the distinct records, which finds the lost and the
// duplicated. When the rows never come, the distinct count runs at the end
// of the wait.
func TestVerifyVictoriaLogsCountsOnceArrived(t *testing.T) {
	base := vltest.Start(t)
	var b strings.Builder
	for _, n := range []int{0, 1, 2, 4, 5, 5, 6, 7, 8, 9} { // 3 lost, 5 twice
		fmt.Fprintf(&b, "{\"create\":{}}\n{\"@timestamp\":%q,\"lg_run\":\"abcd\",\"lg_seq\":\"%010d\",\"log\":\"l\"}\n",
			time.Now().UTC().Format(time.RFC3339Nano), n)
	}
	fmt.Fprintf(&b, "{\"create\":{}}\n{\"@timestamp\":%q,\"lg_run\":\"other\",\"lg_seq\":\"0000000003\"}\n",
		time.Now().UTC().Format(time.RFC3339Nano))
	res, err := http.Post(base+"/insert/elasticsearch/_bulk", "application/x-ndjson", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("bulk: %s", res.Status)
	}

	// Ten rows of the run, ten acked: the rows are there, so the run
	// ended before the wait did.
	rep := &loadtest.Report{RunID: "abcd", Acked: []loadtest.Span{{0, 6}, {6, 4}}}
	start := time.Now()
	v, err := loadtest.Verify(context.Background(), rep, loadtest.Target{VictoriaLogsURL: base}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v.Acked != 10 || v.Found != 9 || v.Lost != 1 || v.Duplicates != 1 || v.OK() {
		t.Errorf("%v", v)
	}
	if v.LastWrite.Before(start) || v.LastWrite.After(start.Add(2*time.Second)) {
		t.Errorf("the rows were all there at %v, want between the start of the wait (%v) and its end", v.LastWrite, start)
	}

	// Twenty acked: the rows never reach them, and the end is the wait's.
	rep = &loadtest.Report{RunID: "abcd", Acked: []loadtest.Span{{0, 20}}}
	start = time.Now()
	v, err = loadtest.Verify(context.Background(), rep, loadtest.Target{VictoriaLogsURL: base}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if v.Found != 9 || v.Lost != 11 || v.Duplicates != 1 {
		t.Errorf("%v", v)
	}
	if v.LastWrite.Before(start.Add(300 * time.Millisecond)) {
		t.Errorf("the rows counted as all there at %v, before the end of the wait (%v)", v.LastWrite, start.Add(300*time.Millisecond))
	}
}
