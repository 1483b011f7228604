package db

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"hsops/internal/config"
)

// A psycopg2 database section's args are libpq connection keywords:
// Synapse hands them to psycopg2, which hands them to libpq. Each keyword
// of libpq is honoured in one of three ways, or refused by name; pgx would
// send any other key to the server as a run-time parameter, which the server
// rejects ("unrecognized configuration parameter"), so nothing unknown is
// passed on.
var (
	// pgxArgs are implemented by pgx as libpq does.
	pgxArgs = setOf("host", "port", "dbname", "user", "password", "passfile", "connect_timeout",
		"sslmode", "sslcert", "sslkey", "sslrootcert", "sslpassword", "sslsni", "sslcertmode", "sslnegotiation",
		"channel_binding", "require_auth", "min_protocol_version", "max_protocol_version",
		"target_session_attrs", "service", "servicefile", "krbsrvname")
	// serverArgs go to the server in the start-up packet, as libpq sends
	// them.
	serverArgs = setOf("application_name", "options", "client_encoding")
	// localArgs are implemented here, around pgx.
	localArgs = setOf("hostaddr", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
		"tcp_user_timeout", "fallback_application_name", "load_balance_hosts",
		"ssl_min_protocol_version", "ssl_max_protocol_version", "requiressl", "sslcompression",
		"gssencmode", "gsslib", "gssdelegation", "replication")
	// refusedArgs are libpq keywords the tools cannot honour, with why.
	refusedArgs = map[string]string{
		"sslcrl":              "certificate revocation lists are not checked by the PostgreSQL driver (pgx)",
		"sslcrldir":           "certificate revocation lists are not checked by the PostgreSQL driver (pgx)",
		"requirepeer":         "the PostgreSQL driver (pgx) cannot check the user of the server process on a Unix socket",
		"sslkeylogfile":       "the PostgreSQL driver (pgx) does not log TLS keys",
		"oauth_issuer":        "OAuth needs a token provider the tools do not have",
		"oauth_client_id":     "OAuth needs a token provider the tools do not have",
		"oauth_client_secret": "OAuth needs a token provider the tools do not have",
		"oauth_scope":         "OAuth needs a token provider the tools do not have",
		"scram_client_key":    "it is for libpq's own use (postgres_fdw, dblink), not for applications",
		"scram_server_key":    "it is for libpq's own use (postgres_fdw, dblink), not for applications",
		"dsn":                 "give the connection string's keywords as args instead (host, port, dbname, user, ...)",
	}
	// ignoredArgs are not libpq's: Synapse's own (the pool's cp_* are
	// skipped by prefix) or the SQLite driver's, which configs copied from
	// the porter carry.
	ignoredArgs = setOf("check_same_thread")
)

func setOf(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// PostgresConnConfig turns a psycopg2 database section into a pgx
// configuration. Every libpq connection keyword psycopg2 accepts is
// honoured (see pgxArgs, serverArgs, localArgs) or refused by name as a
// config error; so is anything else. The password stays inside the returned
// value.
func PostgresConnConfig(cfg config.Database, appName string) (*pgx.ConnConfig, error) {
	a, err := checkPostgresArgs(cfg)
	if err != nil {
		return nil, err
	}
	byHost, err := hostaddrs(cfg, a)
	if err != nil {
		return nil, err
	}
	var parts []string
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if pgxArgs[k] || serverArgs[k] {
			parts = append(parts, k+"="+quoteDSN(a[k]))
		}
	}
	if a["application_name"] == "" {
		name := appName
		if name == "" {
			name = a["fallback_application_name"]
		}
		if name != "" {
			parts = append(parts, "application_name="+quoteDSN(name))
		}
	}
	cc, err := pgx.ParseConfig(strings.Join(parts, " "))
	if err != nil {
		// pgx's parse errors quote the connection string: pass on only the
		// reason they wrap, with any password masked.
		reason := ""
		if inner := errors.Unwrap(err); inner != nil {
			reason = inner.Error()
		} else if pe := (*pgconn.ParseConfigError)(nil); errors.As(err, &pe) {
			reason = parseErrorMessage(pe)
		}
		if reason != "" {
			if pw := a["password"]; pw != "" {
				reason = strings.ReplaceAll(reason, pw, "********")
			}
			reason = " (" + reason + ")"
		}
		return nil, fmt.Errorf("%w: %s: the database.args of %s do not form a valid connection%s", config.ErrInvalid, where(cfg), cfg, reason)
	}
	if err := applyLocalArgs(cc, cfg, a, byHost); err != nil {
		return nil, err
	}
	return cc, nil
}

// parseErrorMessage is the message of a pgx parse error without the
// connection string it quotes.
func parseErrorMessage(pe *pgconn.ParseConfigError) string {
	msg := pe.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// where locates a database section for messages.
func where(cfg config.Database) string {
	if cfg.Line > 0 {
		return fmt.Sprintf("%s line %d", cfg.File, cfg.Line)
	}
	return cfg.File
}

// argError is a config error naming one keyword of database.args.
func argError(cfg config.Database, key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: database.args.%s: %s", config.ErrInvalid, where(cfg), key, fmt.Sprintf(format, args...))
}

// checkPostgresArgs returns the libpq keywords of a section (database
// renamed dbname, as psycopg2 does) after refusing what cannot be honoured.
func checkPostgresArgs(cfg config.Database) (map[string]string, error) {
	a := map[string]string{}
	for k, v := range cfg.Args {
		switch {
		case strings.HasPrefix(k, "cp_"), ignoredArgs[k]:
			continue
		case k == "database":
			if _, ok := cfg.Args["dbname"]; !ok {
				a["dbname"] = v
			}
			continue
		case refusedArgs[k] != "":
			return nil, argError(cfg, k, "not supported: %s", refusedArgs[k])
		case !pgxArgs[k] && !serverArgs[k] && !localArgs[k]:
			return nil, argError(cfg, k, "not a libpq connection keyword (psycopg2 would refuse it too)")
		}
		a[k] = v
	}
	refuse := func(k, why string) error { return argError(cfg, k, "%q is not supported: %s", a[k], why) }
	switch strings.ToLower(a["client_encoding"]) {
	case "", "utf8", "utf-8", "unicode":
		if _, ok := a["client_encoding"]; ok {
			a["client_encoding"] = "UTF8"
		}
	default:
		return nil, refuse("client_encoding", "the tools speak UTF8 to PostgreSQL (Synapse requires a UTF8 database)")
	}
	switch a["gssencmode"] {
	case "", "disable", "prefer":
	case "require":
		return nil, refuse("gssencmode", "the PostgreSQL driver (pgx) has no GSSAPI encryption: use sslmode to encrypt")
	default:
		return nil, argError(cfg, "gssencmode", "%q is not one of disable, prefer, require", a["gssencmode"])
	}
	switch a["gsslib"] {
	case "", "gssapi":
	default:
		return nil, refuse("gsslib", "only gssapi exists here")
	}
	if v, ok := a["gssdelegation"]; ok && v != "0" {
		return nil, refuse("gssdelegation", "the PostgreSQL driver (pgx) does not delegate GSSAPI credentials")
	}
	switch strings.ToLower(a["replication"]) {
	case "", "0", "false", "off", "no":
	default:
		return nil, refuse("replication", "the tools need a normal session, not a replication connection")
	}
	switch a["load_balance_hosts"] {
	case "", "disable", "random":
	default:
		return nil, argError(cfg, "load_balance_hosts", "%q is not one of disable, random", a["load_balance_hosts"])
	}
	switch a["requiressl"] {
	case "", "0":
	case "1":
		if a["sslmode"] == "" {
			a["sslmode"] = "require"
		}
	default:
		return nil, argError(cfg, "requiressl", "%q is not 0 or 1", a["requiressl"])
	}
	return a, nil
}

// applyLocalArgs honours the keywords pgx does not know: hostaddr, the TCP
// keepalives and user timeout, the TLS protocol range and
// load_balance_hosts.
func applyLocalArgs(cc *pgx.ConnConfig, cfg config.Database, a map[string]string, byHost map[string][]string) error {
	if len(byHost) > 0 {
		lookup := cc.LookupFunc
		cc.LookupFunc = func(ctx context.Context, host string) ([]string, error) {
			if addrs, ok := byHost[host]; ok {
				return addrs, nil
			}
			return lookup(ctx, host)
		}
	}
	if err := applyDialer(cc, cfg, a); err != nil {
		return err
	}
	if err := applyTLSVersions(cc, cfg, a); err != nil {
		return err
	}
	if a["load_balance_hosts"] == "random" {
		shuffleHosts(cc)
	}
	return nil
}

// hostaddrs reads hostaddr: libpq connects to its numeric addresses
// instead of resolving host, which still names the server for TLS and the
// password file; a host list and a hostaddr list pair up by position. A
// host that is empty (or a socket directory) becomes its address in
// a["host"]; the others are returned, each with its addresses, for the
// lookup.
func hostaddrs(cfg config.Database, a map[string]string) (map[string][]string, error) {
	if a["hostaddr"] == "" {
		return nil, nil
	}
	addrs := strings.Split(a["hostaddr"], ",")
	hosts := make([]string, len(addrs))
	if a["host"] != "" {
		hosts = strings.Split(a["host"], ",")
		if len(hosts) != len(addrs) {
			return nil, argError(cfg, "hostaddr", "%d addresses for %d hosts: give one per host", len(addrs), len(hosts))
		}
	}
	byHost := map[string][]string{}
	for i, addr := range addrs {
		addr = strings.TrimSpace(addr)
		if addr == "" {
			continue
		}
		if net.ParseIP(addr) == nil {
			return nil, argError(cfg, "hostaddr", "%q is not a numeric IP address", addr)
		}
		h := strings.TrimSpace(hosts[i])
		if h == "" || filepath.IsAbs(h) {
			hosts[i] = addr
			continue
		}
		byHost[h] = append(byHost[h], addr)
	}
	a["host"] = strings.Join(hosts, ",")
	return byHost, nil
}

// applyDialer sets the TCP keepalives and user timeout libpq's keywords ask
// for; without them pgx's dialer is kept.
func applyDialer(cc *pgx.ConnConfig, cfg config.Database, a map[string]string) error {
	_, k1 := a["keepalives"]
	_, k2 := a["keepalives_idle"]
	_, k3 := a["keepalives_interval"]
	_, k4 := a["keepalives_count"]
	_, k5 := a["tcp_user_timeout"]
	if !k1 && !k2 && !k3 && !k4 && !k5 {
		return nil
	}
	num := func(k string) (int, error) {
		v, ok := a[k]
		if !ok || v == "" {
			return -1, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, argError(cfg, k, "%q is not a whole number", v)
		}
		return n, nil
	}
	on, err := num("keepalives")
	if err != nil {
		return err
	}
	idle, err := num("keepalives_idle")
	if err != nil {
		return err
	}
	interval, err := num("keepalives_interval")
	if err != nil {
		return err
	}
	count, err := num("keepalives_count")
	if err != nil {
		return err
	}
	userTimeout, err := num("tcp_user_timeout")
	if err != nil {
		return err
	}
	// Unset or 0: left as the system has it, as libpq does.
	secs := func(n int) time.Duration {
		if n <= 0 {
			return -1
		}
		return time.Duration(n) * time.Second
	}
	if count <= 0 {
		count = -1
	}
	d := &net.Dialer{Timeout: cc.ConnectTimeout}
	if on == 0 {
		d.KeepAlive = -1
	} else {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: secs(idle), Interval: secs(interval), Count: count}
	}
	if userTimeout > 0 {
		d.Control = func(network, _ string, c syscall.RawConn) error {
			if !strings.HasPrefix(network, "tcp") {
				return nil
			}
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, userTimeout)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	cc.DialFunc = d.DialContext
	return nil
}

// applyTLSVersions bounds the TLS protocol versions of every TLS attempt.
func applyTLSVersions(cc *pgx.ConnConfig, cfg config.Database, a map[string]string) error {
	versions := map[string]uint16{"TLSv1": tls.VersionTLS10, "TLSv1.1": tls.VersionTLS11, "TLSv1.2": tls.VersionTLS12, "TLSv1.3": tls.VersionTLS13}
	var lo, hi uint16
	for _, k := range []string{"ssl_min_protocol_version", "ssl_max_protocol_version"} {
		v := a[k]
		if v == "" {
			continue
		}
		n, ok := versions[v]
		if !ok {
			return argError(cfg, k, "%q is not one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3", v)
		}
		if k == "ssl_min_protocol_version" {
			lo = n
		} else {
			hi = n
		}
	}
	if lo == 0 && hi == 0 {
		return nil
	}
	if lo != 0 && hi != 0 && lo > hi {
		return argError(cfg, "ssl_min_protocol_version", "%q is above ssl_max_protocol_version %q", a["ssl_min_protocol_version"], a["ssl_max_protocol_version"])
	}
	set := func(t *tls.Config) {
		if t == nil {
			return
		}
		if lo != 0 {
			t.MinVersion = lo
		}
		if hi != 0 {
			t.MaxVersion = hi
		}
	}
	set(cc.TLSConfig)
	for _, fb := range cc.Fallbacks {
		set(fb.TLSConfig)
	}
	return nil
}

// shuffleHosts puts the hosts in a random order, each host's attempts
// (with and without TLS) kept together and in their order, as libpq's
// load_balance_hosts=random does. The order is drawn once per
// configuration: each process (and each tool run) draws its own.
func shuffleHosts(cc *pgx.ConnConfig) {
	all := append([]*pgconn.FallbackConfig{{Host: cc.Host, Port: cc.Port, TLSConfig: cc.TLSConfig}}, cc.Fallbacks...)
	var groups [][]*pgconn.FallbackConfig
	for _, fb := range all {
		if n := len(groups); n > 0 && groups[n-1][0].Host == fb.Host && groups[n-1][0].Port == fb.Port {
			groups[n-1] = append(groups[n-1], fb)
			continue
		}
		groups = append(groups, []*pgconn.FallbackConfig{fb})
	}
	rand.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
	all = slices.Concat(groups...)
	cc.Host, cc.Port, cc.TLSConfig = all[0].Host, all[0].Port, all[0].TLSConfig
	cc.Fallbacks = all[1:]
}

func quoteDSN(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
