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
	"hsops/internal/fault"
	"hsops/internal/pgtest"
)

// withArgs is the test database's section with args changed (an empty
// value removes the key).
func withArgs(d pgtest.Database, args map[string]string) config.Database {
	c := d.Config
	c.File = "hs.yaml"
	c.Args = map[string]string{}
	for k, v := range d.Config.Args {
		c.Args[k] = v
	}
	for k, v := range args {
		if v == "" {
			delete(c.Args, k)
		} else {
			c.Args[k] = v
		}
	}
	return c
}

// TestOpenPostgres_ReadOnlyWithTargetSessionAttrs: target_session_attrs:
// read-write (Patroni, HA setups) on a primary works for the read-only
// opens of status and upgrade-check, whose read-only intent is in their
// transactions, not their session; and nothing can be written through them.
func TestOpenPostgres_ReadOnlyWithTargetSessionAttrs(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.NewDatabase(t)
	for _, attrs := range []string{"read-write", "primary", "any"} {
		cfg := withArgs(pg, map[string]string{"target_session_attrs": attrs})
		ro, err := db.Open(ctx, cfg, db.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("target_session_attrs=%s, read-only open: %v", attrs, err)
		}
		var one int
		if err := ro.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Errorf("read through a read-only open: %v", err)
		}
		if _, err := ro.ExecContext(ctx, "CREATE TABLE t (x int)"); err == nil || !strings.Contains(err.Error(), "read-only transaction") {
			t.Errorf("write outside a transaction: got %v, want a read-only transaction error", err)
		}
		tx, err := ro.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "CREATE TABLE t (x int)"); err == nil || !strings.Contains(err.Error(), "read-only transaction") {
			t.Errorf("write in a transaction: got %v, want a read-only transaction error", err)
		}
		_ = tx.Rollback()
		st, err := ro.PrepareContext(ctx, "CREATE TABLE t (x int)")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.ExecContext(ctx); err == nil || !strings.Contains(err.Error(), "read-only transaction") {
			t.Errorf("prepared write: got %v, want a read-only transaction error", err)
		}
		st.Close()
		// The session is not read-only: the pool's connections go back
		// idle, outside any transaction.
		var setting string
		if err := ro.QueryRowContext(ctx, "SHOW default_transaction_read_only").Scan(&setting); err != nil || setting != "off" {
			t.Errorf("default_transaction_read_only: %q, %v; want off", setting, err)
		}
		ro.Close()
		rw, err := db.Open(ctx, cfg, db.Options{})
		if err != nil {
			t.Fatalf("target_session_attrs=%s, read-write open: %v", attrs, err)
		}
		if err := db.CheckWritable(ctx, rw); err != nil {
			t.Errorf("a primary: %v", err)
		}
		rw.Close()
	}
}

// TestOpenPostgres_LibpqKeywords: keywords real deployments use reach the
// server as libpq would send them, never as unknown run-time parameters.
func TestOpenPostgres_LibpqKeywords(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.NewDatabase(t)
	host, port := pg.Config.Args["host"], pg.Config.Args["port"]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	for _, c := range []struct {
		name string
		args map[string]string
	}{
		{"hostaddr instead of resolving host", map[string]string{"host": "db.invalid", "hostaddr": host}},
		{"hostaddr alone", map[string]string{"host": "", "hostaddr": host}},
		{"gssencmode", map[string]string{"gssencmode": "prefer"}},
		{"gssencmode disable", map[string]string{"gssencmode": "disable"}},
		{"options", map[string]string{"options": "-c search_path=public -c statement_timeout=5000"}},
		{"several hosts, the first down", map[string]string{"host": host + "," + host, "port": closed + "," + port, "target_session_attrs": "read-write"}},
		{"several hosts with hostaddr", map[string]string{"host": "a.invalid,b.invalid", "hostaddr": host + "," + host, "port": closed + "," + port}},
		{"load_balance_hosts", map[string]string{"host": host + "," + host, "load_balance_hosts": "random"}},
		{"keepalives", map[string]string{"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3", "tcp_user_timeout": "9000"}},
		{"keepalives off", map[string]string{"keepalives": "0"}},
		{"application names", map[string]string{"fallback_application_name": "synapse", "client_encoding": "UTF8"}},
		{"sslmode and the TLS versions", map[string]string{"sslmode": "disable", "ssl_min_protocol_version": "TLSv1.2", "sslcompression": "0"}},
		{"database and Synapse's own", map[string]string{"dbname": "", "database": pg.Name, "cp_min": "5", "cp_max": "10"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := db.Open(ctx, withArgs(pg, c.args), db.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var name string
			if err := d.QueryRowContext(ctx, "SELECT current_database()").Scan(&name); err != nil || name != pg.Name {
				t.Fatalf("current_database: %q, %v", name, err)
			}
		})
	}
	// options reach the server.
	d, err := db.Open(ctx, withArgs(pg, map[string]string{"options": "-c statement_timeout=4321"}), db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var timeout string
	if err := d.QueryRowContext(ctx, "SHOW statement_timeout").Scan(&timeout); err != nil || timeout != "4321ms" {
		t.Errorf("statement_timeout from options: %q, %v", timeout, err)
	}
}

// TestPostgresConnConfig_RefusesByName: what cannot be honoured is a
// config error naming the keyword, before any connection.
func TestPostgresConnConfig_RefusesByName(t *testing.T) {
	base := map[string]string{"host": "db.example", "dbname": "synapse", "user": "synapse"}
	for _, c := range []struct {
		key, value, want string
	}{
		{"sslcrl", "/etc/ssl/crl.pem", "database.args.sslcrl: not supported: certificate revocation lists are not checked"},
		{"sslcrldir", "/etc/ssl/crl", "database.args.sslcrldir: not supported"},
		{"requirepeer", "postgres", "database.args.requirepeer: not supported"},
		{"gssencmode", "require", `database.args.gssencmode: "require" is not supported: the PostgreSQL driver (pgx) has no GSSAPI encryption`},
		{"gssencmode", "always", `database.args.gssencmode: "always" is not one of disable, prefer, require`},
		{"replication", "database", `database.args.replication: "database" is not supported`},
		{"client_encoding", "LATIN1", `database.args.client_encoding: "LATIN1" is not supported`},
		{"dsn", "host=x", "database.args.dsn: not supported: give the connection string's keywords as args"},
		{"sslmodee", "require", "database.args.sslmodee: not a libpq connection keyword"},
		{"hostaddr", "db.example", `database.args.hostaddr: "db.example" is not a numeric IP address`},
		{"keepalives_idle", "soon", `database.args.keepalives_idle: "soon" is not a whole number`},
		{"ssl_min_protocol_version", "SSLv3", `database.args.ssl_min_protocol_version: "SSLv3" is not one of TLSv1`},
	} {
		args := map[string]string{c.key: c.value}
		for k, v := range base {
			args[k] = v
		}
		cfg := config.Database{Name: config.EnginePostgres, Args: args, File: "hs.yaml", Line: 12}
		_, err := db.PostgresConnConfig(cfg, "")
		if !errors.Is(err, config.ErrInvalid) || fault.ClassOf(err) != fault.Config {
			t.Errorf("%s=%s: got %v, want a config error", c.key, c.value, err)
			continue
		}
		if !strings.Contains(err.Error(), "hs.yaml line 12: "+c.want) {
			t.Errorf("%s=%s: got %q, want it to say %q", c.key, c.value, err, c.want)
		}
	}
	// Two hosts, three addresses.
	cfg := config.Database{Name: config.EnginePostgres, Args: map[string]string{"host": "a,b", "hostaddr": "10.0.0.1,10.0.0.2,10.0.0.3"}, File: "hs.yaml"}
	if _, err := db.PostgresConnConfig(cfg, ""); err == nil || !strings.Contains(err.Error(), "3 addresses for 2 hosts") {
		t.Errorf("hostaddr list: got %v", err)
	}
}

// TestCheckWritable_ReadOnlySession: a session that cannot write (here
// default_transaction_read_only set on the database or the role, as on a
// replica) is "a read-only replica", of the permission class.
func TestCheckWritable_ReadOnlySession(t *testing.T) {
	ctx := context.Background()
	for _, scope := range []string{"database", "role"} {
		pg := pgtest.NewDatabase(t)
		admin, err := db.Open(ctx, pg.Config, db.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := pg.Config
		if scope == "database" {
			_, err = admin.ExecContext(ctx, "ALTER DATABASE "+pg.Name+" SET default_transaction_read_only = on")
		} else {
			role := "ro_" + pg.Name
			_, err = admin.ExecContext(ctx, "CREATE ROLE "+role+" LOGIN; ALTER ROLE "+role+" SET default_transaction_read_only = on")
			cfg = withArgs(pg, map[string]string{"user": role, "password": ""})
			t.Cleanup(func() {
				a, err := db.Open(ctx, pg.Config, db.Options{})
				if err == nil {
					_, _ = a.ExecContext(ctx, "DROP ROLE "+role)
					a.Close()
				}
			})
		}
		admin.Close()
		if err != nil {
			t.Fatal(err)
		}
		d, err := db.Open(ctx, cfg, db.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = db.CheckWritable(ctx, d)
		d.Close()
		if !errors.Is(err, db.ErrReadOnlyServer) || fault.ClassOf(err) != fault.Permission {
			t.Fatalf("%s: got %v, want ErrReadOnlyServer (permission)", scope, err)
		}
		if !strings.Contains(err.Error(), "this server is a read-only replica (default_transaction_read_only is on for this database or user)") {
			t.Errorf("%s: %v", scope, err)
		}
		// Read-only tools still read it.
		ro, err := db.Open(ctx, cfg, db.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("%s, read-only open: %v", scope, err)
		}
		if err := ro.QueryRowContext(ctx, "SELECT 1").Scan(new(int)); err != nil {
			t.Errorf("%s, read: %v", scope, err)
		}
		ro.Close()
	}
}
