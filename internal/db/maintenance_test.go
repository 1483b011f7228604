package db_test

import (
	"context"
	"testing"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/pgtest"
)

func TestConnectMaintenance_ReachesTheServersPostgresDatabase(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.NewDatabase(t)
	conn, err := db.ConnectMaintenance(ctx, withArgs(pg, map[string]string{"application_name": "theirs"}), "hsops test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var name, app string
	if err := conn.QueryRow(ctx, "SELECT current_database(), current_setting('application_name')").Scan(&name, &app); err != nil {
		t.Fatal(err)
	}
	if name != "postgres" || app != "hsops test" {
		t.Errorf("connected to %q as %q, want postgres as %q", name, app, "hsops test")
	}
}

func TestConnectMaintenance_UnreachableSaysWhyWithoutPassword(t *testing.T) {
	_, err := db.ConnectMaintenance(context.Background(), unreachable(t), "hsops test")
	checkUnreachable(t, err)
}

func TestWithDBName_NamesAnotherDatabaseOnTheSameServer(t *testing.T) {
	cfg := config.Database{Name: config.EnginePostgres, Args: map[string]string{"host": "h", "database": "synapse", "user": "u"}}
	got := db.WithDBName(cfg, "copy")
	if got.Args["dbname"] != "copy" || got.Args["host"] != "h" || got.Args["user"] != "u" {
		t.Errorf("args %v, want dbname copy on host h as u", got.Args)
	}
	if _, ok := got.Args["database"]; ok {
		t.Errorf("args %v keep the old database name under its psycopg2 alias", got.Args)
	}
	if cfg.Args["database"] != "synapse" || cfg.Args["dbname"] != "" {
		t.Errorf("the original changed: %v", cfg.Args)
	}
}
