package rehearse

import (
	"reflect"
	"testing"
)

// TestRebuildJobs_OrderAndGrouping: keys, indexes, checks, then foreign
// keys; a table's ALTERs are one job (ALTER TABLE locks the table whole),
// each CREATE INDEX a job of its own; the biggest tables' jobs first.
func TestRebuildJobs_OrderAndGrouping(t *testing.T) {
	s := &pgSchema{
		Tables:  []pgTable{{Name: "small", Bytes: 10}, {Name: "big", Bytes: 1000}},
		Keys:    []pgStmt{{"small", "pk small"}, {"big", "pk big"}, {"big", "unique big"}},
		Indexes: []pgStmt{{"small", "index small"}, {"big", "index big 1"}, {"big", "index big 2"}},
		Checks:  []pgStmt{{"small", "check small"}},
		Foreign: []pgStmt{{"small", "fk small 1"}, {"small", "fk small 2"}, {"big", "fk big"}},
	}
	want := [][][]string{
		{{"pk big", "unique big"}, {"pk small"}},
		{{"index big 1"}, {"index big 2"}, {"index small"}},
		{{"check small"}},
		{{"fk big"}, {"fk small 1", "fk small 2"}},
	}
	if got := rebuildJobs(s); !reflect.DeepEqual(got, want) {
		t.Errorf("rebuildJobs =\n%q\nwant\n%q", got, want)
	}
}

// TestFinishStatements: triggers and column options, each sequence's
// owner then value, and ANALYZE last.
func TestFinishStatements(t *testing.T) {
	s := &pgSchema{
		Triggers:      []string{"CREATE TRIGGER t"},
		ColumnOptions: []string{"ALTER TABLE x ALTER COLUMN y SET (n_distinct=1)"},
		Sequences: []pgSequence{
			{Name: "owned", OwnedBy: "x.id", LastValue: 7, IsCalled: true},
			{Name: "free", LastValue: 1},
		},
	}
	want := []string{
		"CREATE TRIGGER t",
		"ALTER TABLE x ALTER COLUMN y SET (n_distinct=1)",
		`ALTER SEQUENCE "owned" OWNED BY x.id`,
		`SELECT setval('"owned"', 7, true)`,
		`SELECT setval('"free"', 1, false)`,
		"ANALYZE",
	}
	if got := finishStatements(s); !reflect.DeepEqual(got, want) {
		t.Errorf("finishStatements =\n%q\nwant\n%q", got, want)
	}
}
