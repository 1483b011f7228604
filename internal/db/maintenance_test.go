package db_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := config.Database{Label: "master", Name: config.EnginePostgres, Args: map[string]string{
		"host": "127.0.0.1", "port": strconv.Itoa(port), "user": "synapse", "password": "s3cr3t-pw", "database": "synapse",
	}}
	_, err = db.ConnectMaintenance(context.Background(), cfg, "hsops test")
	if !errors.Is(err, db.ErrUnreachable) {
		t.Fatalf("got %v, want ErrUnreachable", err)
	}
	if msg := err.Error(); strings.Contains(msg, "s3cr3t-pw") || !strings.Contains(msg, "refused") || strings.Contains(msg, "\n") {
		t.Errorf("error %q: want one line saying the connection was refused, without the password", msg)
	}
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
