package porter

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"hsops/internal/dbtest"
	"hsops/internal/gen"
	"hsops/internal/pgtest"
	"hsops/internal/store"
)

// finalPort sets what a switch's final port sets.
func finalPort(check MovedCheck) func(*Options) {
	return func(o *Options) {
		o.Verify = false
		o.PagesChecked, o.KeepUnchanged, o.EstimateAlready, o.VerifyMoved = true, true, true, check
	}
}

func hasStep(res *Result, name string) bool {
	for _, s := range res.Steps {
		if s.Name == name {
			return true
		}
	}
	return false
}

func tableResult(res *Result, name string) *TableResult {
	for i := range res.Tables {
		if res.Tables[i].Name == name {
			return &res.Tables[i]
		}
	}
	return nil
}

// TestFinalPort_FollowsWhatMoved: a final port reads no page it does not
// need (no quick_check), copies the new rows and the re-copied tables that
// changed, keeps the others, and verifies what moved; afterwards a whole
// verification finds both sides equal. With nothing new it moves nothing.
func TestFinalPort_FollowsWhatMoved(t *testing.T) {
	src := engineSource(t, gen.Params{Users: 10, Rooms: 3, Messages: 400, Backfilled: 2, Seed: 4})
	tgt := pgtest.NewDatabase(t)
	first := mustPort(t, src, tgt.Config)
	if first.PageCheck != "quick_check" || !hasStep(first, "integrity check") {
		t.Errorf("a plain port: page check %q, steps %v; want the whole file checked", first.PageCheck, first.Steps)
	}

	// The homeserver ran on: new messages (a forward extremity moves), one
	// backfilled event (a negative rowid); and someone edited a re-copied
	// table in PostgreSQL; an append-only table lost its only index.
	addEvents(t, src, 30)
	s := openSQLite(t, src)
	persist(t, s, &store.Event{RoomID: "!room1:example.org", Type: "m.room.message", Sender: "@user2:example.org", Backfilled: true,
		PrevEvents: []string{}, Content: map[string]any{"msgtype": "m.text", "body": "from the past"}, OriginServerTS: 1600000000000})
	s.Close()
	d := openPG(t, tgt.Config)
	if _, err := d.Exec("UPDATE profiles SET displayname = 'edited' WHERE user_id = 'user1'"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec("DROP INDEX event_edges_event_id_prev_event_id_idx, ev_edges_prev_id"); err != nil {
		t.Fatal(err)
	}

	final := mustPort(t, src, tgt.Config, finalPort(MovedChecksums))
	if final.PageCheck != "as read" || hasStep(final, "integrity check") || !hasStep(final, "compare") {
		t.Errorf("page check %q, steps %v: want no quick_check, the re-copied tables compared", final.PageCheck, final.Steps)
	}
	if final.Verified != "moved rows" {
		t.Errorf("verified %q", final.Verified)
	}
	if n := copied(final, "events"); n != 31 {
		t.Errorf("copied %d events, want 31 (30 new, 1 backfilled)", n)
	}
	for _, name := range []string{"profiles", "event_forward_extremities"} {
		if r := tableResult(final, name); r == nil || r.Kept || r.Copied == 0 {
			t.Errorf("%s: %+v; want it copied again (it differs)", name, r)
		}
	}
	if r := tableResult(final, "user_filters"); r == nil || !r.Kept || r.Copied != 0 || r.Verify == nil || !r.Verify.Match {
		t.Errorf("user_filters: %+v; want it kept (the same on both sides)", r)
	}
	verified := 0
	for _, r := range final.Tables {
		if r.Copied > 0 {
			if r.Verify == nil || !r.Verify.Match {
				t.Errorf("%s moved %d rows: verification %+v", r.Name, r.Copied, r.Verify)
				continue
			}
			verified++
		}
	}
	for _, name := range []string{"events", "event_json", "event_edges", "event_to_state_groups", "event_search"} {
		if r := tableResult(final, name); r == nil || r.Verify == nil || r.Verify.SourceRows == 0 || r.Verify.SourceRows != r.Copied {
			t.Errorf("%s: %+v; want the rows it moved verified", name, r)
		}
	}

	// Nothing new: nothing moves, and still no quick_check.
	again := mustPort(t, src, tgt.Config, finalPort(MovedChecksums))
	if again.Rows != 0 || hasStep(again, "integrity check") {
		t.Errorf("nothing new: %d rows moved, steps %v", again.Rows, again.Steps)
	}
	for _, r := range again.Tables {
		if r.Strategy == Recopy && !r.Kept && r.Copied > 0 {
			t.Errorf("%s copied again though unchanged", r.Name)
		}
	}

	// Both sides are equal, whole.
	assertExact(t, mustPort(t, src, tgt.Config))
}

// rightmostLeaf is the page number of the last leaf page of a table's
// rowid b-tree: where its newest rows are.
func rightmostLeaf(t *testing.T, path, table string) (page, size int64) {
	t.Helper()
	s := openSQLite(t, path)
	if err := s.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = ?", table).Scan(&page); err != nil {
		t.Fatal(err)
	}
	if err := s.QueryRow("PRAGMA page_size").Scan(&size); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for {
		b := data[(page-1)*size : page*size]
		switch b[0] {
		case 0x0d:
			return page, size
		case 0x05:
			page = int64(binary.BigEndian.Uint32(b[8:12]))
		default:
			t.Fatalf("page %d of %s is not a table b-tree page (%#x)", page, table, b[0])
		}
	}
}

// TestFinalPort_CorruptNewRowsRefused: without the whole-file check, a
// corrupt page among the new rows is still found, before anything is
// written.
func TestFinalPort_CorruptNewRowsRefused(t *testing.T) {
	src := engineSource(t, gen.Params{Users: 5, Rooms: 2, Messages: 100, Seed: 5})
	tgt := pgtest.NewDatabase(t)
	mustPort(t, src, tgt.Config)
	addEvents(t, src, 60)
	page, size := rightmostLeaf(t, src, "event_json")
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Not a b-tree page any more.
	if _, err := f.WriteAt([]byte{0xff}, (page-1)*size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before := contents(t, tgt.Config)
	_, err = port(t, src, tgt.Config, finalPort(MovedChecksums))
	if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "the SQLite database is corrupt") {
		t.Fatalf("got %v, want the source refused as corrupt", err)
	}
	if got := contents(t, tgt.Config); got != before {
		t.Fatalf("the refused final port wrote:\n%s", dbtest.DiffLines(before, got))
	}
}

// TestFinalPort_VerificationOfWhatMovedCatchesDifferences: rows altered or
// lost on their way into PostgreSQL fail the verification of what moved.
func TestFinalPort_VerificationOfWhatMovedCatchesDifferences(t *testing.T) {
	for _, tc := range []struct {
		name    string
		check   MovedCheck
		trigger string
		table   string
		detail  string
	}{
		{"altered rows, checksums", MovedChecksums, "NEW.json := NEW.json || ' '; RETURN NEW;", "event_json", "different contents"},
		{"lost rows, counts", MovedCounts, "RETURN NULL;", "event_edges", "rows in SQLite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := engineSource(t, gen.Params{Users: 5, Rooms: 2, Messages: 100, Seed: 6})
			tgt := pgtest.NewDatabase(t)
			mustPort(t, src, tgt.Config)
			addEvents(t, src, 10)
			d := openPG(t, tgt.Config)
			if _, err := d.Exec("CREATE FUNCTION sabotage() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN " + tc.trigger + " END $$"); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Exec("CREATE TRIGGER sabotage BEFORE INSERT ON " + tc.table + " FOR EACH ROW EXECUTE FUNCTION sabotage()"); err != nil {
				t.Fatal(err)
			}
			res, err := port(t, src, tgt.Config, finalPort(tc.check))
			if !errors.Is(err, ErrVerify) {
				t.Fatalf("got %v, want a verification failure", err)
			}
			r := tableResult(res, tc.table)
			if r == nil || r.Verify == nil || r.Verify.Match || !strings.Contains(r.Verify.Detail, tc.detail) {
				t.Fatalf("%s: %+v", tc.table, r)
			}
			for _, other := range res.Tables {
				if other.Name != tc.table && other.Verify != nil && !other.Verify.Match {
					t.Errorf("%s differs too: %s", other.Name, other.Verify.Detail)
				}
			}
		})
	}
}

// TestFinalPort_FromNothingIsVerifiedWhole: what a port moves into an
// empty target is every row, compared whole on both sides.
func TestFinalPort_FromNothingIsVerifiedWhole(t *testing.T) {
	src := engineSource(t, gen.Params{Users: 5, Rooms: 2, Messages: 80, Backfilled: 2, Seed: 7})
	for _, check := range []MovedCheck{MovedCounts, MovedChecksums} {
		tgt := pgtest.NewDatabase(t)
		res := mustPort(t, src, tgt.Config, finalPort(check), func(o *Options) { o.PagesChecked = false })
		for _, name := range []string{"events", "event_json", "event_search", "users"} {
			r := tableResult(res, name)
			if r == nil || r.Verify == nil || !r.Verify.Match || r.Verify.SourceRows == 0 || r.Verify.SourceRows != r.Verify.TargetRows {
				t.Errorf("check %d, %s: %+v", check, name, r)
			}
		}
		assertExact(t, mustPort(t, src, tgt.Config))
	}
}

// TestFinalPort_RowsHiddenFromTheSeekAreFound: an interior page of the
// SQLite file whose key was lowered (which no read checks, and the
// whole-file check would have found) hides new rows from the copy's seek;
// the verification of what moved, which walks to them from the other end,
// finds them missing in PostgreSQL.
func TestFinalPort_RowsHiddenFromTheSeekAreFound(t *testing.T) {
	src := engineSource(t, gen.Params{Users: 5, Rooms: 2, Messages: 300, Seed: 8})
	tgt := pgtest.NewDatabase(t)
	mustPort(t, src, tgt.Config)
	s := openSQLite(t, src)
	var fwd, root, size int64
	if err := s.QueryRow("SELECT max(rowid) + 1 FROM event_json").Scan(&fwd); err != nil {
		t.Fatal(err)
	}
	if err := s.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = 'event_json'").Scan(&root); err != nil {
		t.Fatal(err)
	}
	if err := s.QueryRow("PRAGMA page_size").Scan(&size); err != nil {
		t.Fatal(err)
	}
	s.Close()
	addEvents(t, src, 150)

	// The root's cell whose child holds rowid fwd: its key (the child's
	// largest rowid) becomes fwd-1, written in as many bytes as it had.
	f, err := os.OpenFile(src, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, size)
	if _, err := f.ReadAt(page, (root-1)*size); err != nil {
		t.Fatal(err)
	}
	if page[0] != 0x05 {
		t.Fatalf("the root of event_json is not an interior page (%#x): too few rows", page[0])
	}
	cells := int(binary.BigEndian.Uint16(page[3:5]))
	patched := false
	for i := 0; i < cells && !patched; i++ {
		off := int(binary.BigEndian.Uint16(page[12+2*i:]))
		key, n := int64(0), 0
		for p := off + 4; ; p++ {
			key = key<<7 | int64(page[p]&0x7f)
			n++
			if page[p]&0x80 == 0 {
				break
			}
		}
		if key < fwd {
			continue
		}
		v := uint64(fwd - 1)
		for j := n - 1; j >= 0; j-- {
			b := byte(v & 0x7f)
			if j < n-1 {
				b |= 0x80
			}
			page[off+4+j] = b
			v >>= 7
		}
		patched = true
	}
	if !patched {
		t.Fatal("the new rows start in the root's rightmost child: add more rows")
	}
	if _, err := f.WriteAt(page, (root-1)*size); err != nil {
		t.Fatal(err)
	}
	f.Close()

	res, err := port(t, src, tgt.Config, finalPort(MovedChecksums))
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("got %v, want a verification failure", err)
	}
	r := tableResult(res, "event_json")
	if r == nil || r.Verify == nil || r.Verify.Match || r.Verify.SourceRows <= r.Verify.TargetRows {
		t.Fatalf("event_json: %+v; want rows of SQLite missing in PostgreSQL", r)
	}
}
