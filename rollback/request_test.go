package rollback

import (
	"context"
	"errors"
	"os"
	"testing"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/fault"
	"hsops/internal/releases"
	"hsops/schema"
	"hsops/schema/engine"
)

// releaseAt is a release whose schema version is v.
func releaseAt(t *testing.T, v int) releases.SchemaFact {
	t.Helper()
	for _, f := range releases.SchemaFacts() {
		if f.Schema == v {
			return f
		}
	}
	t.Fatalf("no release has schema %d", v)
	return releases.SchemaFact{}
}

func TestPrepare_ReleaseTargets(t *testing.T) {
	ctx := context.Background()
	tg := dbtest.New(t, db.SQLite)
	d := tg.Open(t)
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	cfg := &config.Config{ServerName: "example.org", Databases: []config.Database{tg.Config}}

	newest := releaseAt(t, engine.Schema().Version)
	ps, err := Prepare(ctx, cfg, Request{ToRelease: newest.Version})
	if err != nil {
		t.Fatal(err)
	}
	if p := ps[0]; p.AsIs == nil || !p.Empty() || p.Backup != "" {
		t.Errorf("%s accepts the database as it is: got AsIs %v, Empty %v, Backup %q", newest.Tag(), p.AsIs, p.Empty(), p.Backup)
	}

	older := releaseAt(t, 80)
	ps, err = Prepare(ctx, cfg, Request{ToRelease: older.Version})
	if err != nil {
		t.Fatal(err)
	}
	p := ps[0]
	wantBackup := tg.Config.SQLitePath() + ".before-rollback-83-to-80"
	if p.Plan == nil || p.Plan.Target != 80 || p.Backup != wantBackup || p.Refusal() != nil {
		t.Fatalf("to %s: plan %+v, backup %q", older.Tag(), p.Plan, p.Backup)
	}
	out, err := p.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out.From != 83 || out.Version != 80 || out.Backup != wantBackup || out.Result == nil {
		t.Errorf("Run = %+v", out)
	}
	if _, err := os.Stat(wantBackup); err != nil {
		t.Errorf("no copy made first: %v", err)
	}
	if got := BackupPath(tg.Config.SQLitePath(), 83, 80); got != wantBackup+".1" {
		t.Errorf("the next copy is named %q, want %q", got, wantBackup+".1")
	}
}

func TestPrepare_Refusals(t *testing.T) {
	ctx := context.Background()
	tg := dbtest.New(t, db.SQLite)
	one := []config.Database{tg.Config}
	for _, tc := range []struct {
		name  string
		cfg   *config.Config
		req   Request
		class fault.Class
		is    error
	}{
		{"a worker's config", &config.Config{WorkerApp: "synapse.app.generic_worker", Databases: one}, Request{ToSchema: 80}, fault.Version, schema.ErrWorker},
		{"--backup-database on SQLite", &config.Config{Databases: one}, Request{ToSchema: 80, BackupDatabase: "copy"}, fault.Usage, nil},
		{"two databases at once", &config.Config{Databases: []config.Database{tg.Config, tg.Config}}, Request{ToSchema: 80}, fault.Usage, nil},
		{"a database with no schema", &config.Config{Databases: one}, Request{ToSchema: 80}, fault.NotOurs, schema.ErrNotHomeserver},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg.Open(t).Close()
			_, err := Prepare(ctx, tc.cfg, tc.req)
			if fault.ClassOf(err) != tc.class || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Errorf("Prepare = %v (class %v), want class %v", err, fault.ClassOf(err), tc.class)
			}
		})
	}
}
