// Package server is the homeserver engine's process: its lifecycle
// (Process.Run: the in-use refusal, daemonizing through package proc, the
// pid file, SIGHUP), start-up (database checks, schema upgrade or worker
// refusal, listeners), the HTTP API, the in-process background updates, and
// an orderly shutdown; and the helpers of its command (GenerateConfig,
// RegisterShared).
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"hsops/internal/buildinfo"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/portstate"
	"hsops/internal/sequences"
	"hsops/internal/store"
	"hsops/schema"
	"hsops/schema/engine"
)

// Errors of start-up that the command maps to messages and exit codes.
var (
	// ErrListen means a listener could not be bound.
	ErrListen = fault.New(fault.Listen, "cannot listen",
		"another process may be using the port: stop it, or change the listener in <config>")
)

// Options configure a server.
type Options struct {
	Config *config.Config
	Log    *Logger
	// Notify sends systemd notifications (READY=1 ...); nil sends none.
	Notify func(state string)
}

// Server is a running homeserver process.
type Server struct {
	cfg      *config.Config
	log      *Logger
	notify   func(string)
	worker   bool
	instance string
	dbs      []*db.DB
	store    *store.Store
	bg       *bgController
	http     *http.Server
	lns      []net.Listener
	started  time.Time
	// database names the database this process serves (server_version
	// shows it); nil when it has no engine mark.
	database *databaseIdentity
	nonces   *nonceStore
	wg       sync.WaitGroup
	// quit is closed when the server stops: long-polling /sync requests
	// answer at once instead of holding the shutdown.
	quit chan struct{}
}

// Instance is this process's name: "master" or the worker name.
func (s *Server) Instance() string { return s.instance }

// Addrs are the addresses the server listens on.
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.lns))
	for i, l := range s.lns {
		out[i] = l.Addr()
	}
	return out
}

// Start does everything before serving: open and check the databases,
// prepare or check the schema, bind the listeners. On error nothing is left
// open.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	cfg := opts.Config
	s := &Server{cfg: cfg, log: opts.Log, notify: opts.Notify, worker: cfg.IsWorker(), instance: "master", started: time.Now(), nonces: newNonceStore(), quit: make(chan struct{})}
	if s.notify == nil {
		s.notify = func(string) {}
	}
	if s.worker {
		s.instance = cfg.WorkerName
		if s.instance == "" {
			return nil, fmt.Errorf("%w: worker_name is required for a worker", config.ErrInvalid)
		}
	}
	if cfg.ServerName == "" {
		return nil, fmt.Errorf("%w: server_name is required", config.ErrInvalid)
	}
	if len(cfg.Databases) == 0 {
		return nil, config.ErrNoDatabase
	}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	role := "main process"
	if s.worker {
		role = "worker " + s.instance
	}
	s.log.Infof("starting homeserver %s for %s as the %s (pid %d)", buildinfo.ServerVersion(), cfg.ServerName, role, os.Getpid())
	mainDB, err := cfg.DatabaseFor("main")
	if err != nil {
		return nil, err
	}
	if stateDB, err := cfg.DatabaseFor("state"); err == nil && mainDB.Label != stateDB.Label {
		return nil, fmt.Errorf("%w: the engine keeps the main and state data stores in one database, and this configuration puts them in %q and %q: list both in the data_stores of one database (port_db and update_database handle split databases; the engine does not serve them)",
			config.ErrInvalid, mainDB.Label, stateDB.Label)
	}
	for _, dbc := range cfg.Databases {
		d, err := s.openDatabase(ctx, dbc)
		if err != nil {
			return nil, err
		}
		s.dbs = append(s.dbs, d)
	}
	for _, d := range s.dbs {
		if d.Label == mainDB.Label {
			s.store = store.New(d, cfg.ServerName, s.instance)
		}
	}
	if err := s.store.CheckServerName(ctx); err != nil {
		return nil, err
	}
	if s.database, err = identify(ctx, s.store.DB); err != nil {
		return nil, err
	}
	if err := s.store.InitStreams(ctx); err != nil {
		return nil, err
	}
	for _, d := range s.dbs {
		if err := sequences.Check(ctx, d); err != nil {
			return nil, err
		}
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	s.bg = newBGController(s)
	return s, nil
}

// openDatabase opens one physical database, runs the preflight (Apply runs
// it for the main process), and brings the schema up to date (main process)
// or checks it is (worker).
func (s *Server) openDatabase(ctx context.Context, dbc config.Database) (*db.DB, error) {
	d, err := db.Open(ctx, dbc, db.Options{Create: !s.worker, AppName: "hsops homeserver " + s.instance, MaxConns: maxConns(dbc)})
	if s.worker && errors.Is(err, db.ErrNotFound) {
		return nil, fmt.Errorf("%w: uninitialised database (%v): run the main process to prepare the database schema before starting worker processes", schema.ErrWorker, err)
	}
	if err != nil {
		return nil, err
	}
	// A database this process cannot write is refused before it serves:
	// every write would fail, while /health said OK.
	if err := db.CheckWritable(ctx, d); err != nil {
		d.Close()
		return nil, err
	}
	fail := func(err error) (*db.DB, error) {
		d.Close()
		if errors.Is(err, schema.ErrNotEngine) || errors.Is(err, schema.ErrNotHomeserver) {
			err = fault.Wrap(fault.NotOurs, err, "point the database section of <config> at an hsops engine database, or at an empty one to create it")
		}
		return nil, err
	}
	if err := portstate.Check(ctx, d); err != nil {
		return fail(err)
	}
	set := engine.Schema()
	opts := schema.Options{Stores: dbc.DataStores, Worker: s.worker, ServerName: s.cfg.ServerName,
		AllowUnsafeLocale: dbc.AllowUnsafeLocale, Holder: "homeserver " + s.instance,
		Progress: func(ev schema.Event) {
			switch ev.Type {
			case "snapshot":
				s.log.Infof("%s: created at schema %d", d.Desc, ev.Version)
			case "version":
				s.log.Infof("%s: applying schema deltas for v%d", d.Desc, ev.Version)
			case "delta":
				s.log.Infof("%s: applied %d/%s (%d ms)", d.Desc, ev.Version, ev.File, ev.Millis)
			}
		}}
	if s.worker {
		st, err := schema.ReadState(ctx, d, d.DB)
		if err != nil {
			return fail(err)
		}
		if err := schema.Preflight(ctx, d, st, opts.AllowUnsafeLocale); err != nil {
			return fail(err)
		}
		if _, err := set.Plan(st, d.Engine, opts); err != nil {
			return fail(err)
		}
		return d, nil
	}
	// A long upgrade must not be killed by systemd's start timeout.
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				s.notify("EXTEND_TIMEOUT_USEC=30000000")
			}
		}
	}()
	res, err := set.Apply(ctx, d, opts)
	close(stop)
	if err != nil {
		return fail(err)
	}
	if len(res.Applied) > 0 || res.Plan.Create {
		s.log.Infof("%s: schema is at %d", d.Desc, res.Version)
	}
	return d, nil
}

func maxConns(dbc config.Database) int {
	if dbc.IsSQLite() {
		return 1
	}
	if v, err := strconv.Atoi(dbc.Args["cp_max"]); err == nil && v > 0 {
		return v
	}
	return 10
}

func (s *Server) listeners() []config.Listener {
	if s.worker {
		return s.cfg.WorkerListeners
	}
	return s.cfg.Listeners
}

// listen binds every address of every HTTP listener.
func (s *Server) listen() error {
	for _, l := range s.listeners() {
		if l.Type != "http" && l.Type != "metrics" && l.Type != "" {
			continue
		}
		if l.Path != "" {
			ln, err := net.Listen("unix", l.Path)
			if err != nil {
				return fmt.Errorf("%w on %s: %v", ErrListen, l.Path, err)
			}
			s.lns = append(s.lns, ln)
			continue
		}
		bound := 0
		for _, addr := range l.Addresses() {
			hostport := net.JoinHostPort(addr, strconv.Itoa(l.Port))
			ln, err := net.Listen("tcp", hostport)
			if err != nil {
				// "::" usually takes IPv4 too; then "0.0.0.0" finds the
				// port in use, which is fine.
				if addr == "0.0.0.0" && bound > 0 && errors.Is(err, syscall.EADDRINUSE) {
					continue
				}
				return fmt.Errorf("%w on %s: %v", ErrListen, hostport, err)
			}
			bound++
			s.lns = append(s.lns, ln)
		}
	}
	if len(s.lns) == 0 {
		// As in Synapse, a process may have no HTTP listener (a worker that
		// only runs background tasks, say): it serves nothing over HTTP.
		what := "listeners"
		if s.worker {
			what = "worker_listeners"
		}
		s.log.Infof("no http listener in %s: this process serves nothing over HTTP", what)
	}
	return nil
}

// Serve serves until ctx is cancelled, then shuts down in order: stop
// accepting, finish in-flight requests and the current background-update
// batch, close the databases.
func (s *Server) Serve(ctx context.Context) error {
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 30 * time.Second}
	errs := make(chan error, len(s.lns))
	for _, ln := range s.lns {
		ln := ln
		s.log.Infof("listening on %s", ln.Addr())
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		}()
	}
	if !s.worker && s.runsBackgroundTasks() {
		s.bg.start()
	}
	s.notify("READY=1\nMAINPID=" + strconv.Itoa(os.Getpid()))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	s.log.Infof("shutting down")
	s.notify("STOPPING=1")
	close(s.quit)
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = s.http.Shutdown(sctx)
	s.bg.stop()
	s.wg.Wait()
	s.closeAll()
	s.log.Infof("stopped")
	return err
}

// runsBackgroundTasks follows Synapse's run_background_tasks_on (default
// the main process, "master").
func (s *Server) runsBackgroundTasks() bool {
	var on string
	if v, ok := s.cfg.Raw("run_background_tasks_on"); ok {
		on, _ = v.(string)
	}
	if on == "" {
		on = "master"
	}
	return on == s.instance
}

func (s *Server) closeAll() {
	for _, d := range s.dbs {
		d.Close()
	}
	for _, ln := range s.lns {
		ln.Close()
	}
}
