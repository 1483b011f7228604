package load

import (
	"context"
	"testing"

	"hsops/internal/pgtest"
	"hsops/internal/testbin"
)

// TestBenchPort_SmallRun runs the whole benchmark on a small database: the
// real port_db, the raw COPY and the floor all load the same rows, and the
// floor rebuilds what port_db rebuilt; with two rounds, the second loads
// the references first and port_db last, and the result is one of them.
func TestBenchPort_SmallRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds port_db and loads a database three times")
	}
	dir := t.TempDir()
	bin := testbin.Command(t, dir, "hsops/cmd/port_db")
	res, err := BenchPort(context.Background(), BenchPortOptions{Events: 20000, Jobs: 2, BatchSize: 5000, Work: dir,
		AdminURL: pgtest.AdminURL(t), PortDB: bin, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.AllRounds) != 2 || !res.AllRounds[0].PortFirst || res.AllRounds[1].PortFirst {
		t.Errorf("rounds: %+v", res.AllRounds)
	}
	if res.Ratio != res.AllRounds[0].Ratio && res.Ratio != res.AllRounds[1].Ratio {
		t.Errorf("the ratio reported (%.3f) is no round's: %+v", res.Ratio, res.AllRounds)
	}
	if res.Rows < 150000 || res.RawCopyRows < res.Rows-1 || res.RawCopyRows > res.Rows {
		t.Errorf("port_db copied %d rows, the raw COPY %d", res.Rows, res.RawCopyRows)
	}
	if res.Rebuilt == 0 || res.FloorSeconds <= 0 || res.RawCopySeconds <= 0 || res.PeakRSSMB <= 0 {
		t.Errorf("incomplete result: %+v", res)
	}
	phases := map[string]bool{}
	for _, p := range res.PortPhases {
		phases[p.Name] = true
	}
	for _, want := range []string{"checks", "copy", "index rebuild", "sequences"} {
		if !phases[want] {
			t.Errorf("no %q phase in %+v", want, res.PortPhases)
		}
	}
}
