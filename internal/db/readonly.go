package db

import (
	"context"
	"database/sql/driver"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// A PostgreSQL database opened ReadOnly runs every statement in a read-only
// transaction: the transactions its users begin are begun READ ONLY, and a
// statement outside one is wrapped in BEGIN READ ONLY ... COMMIT. The
// session itself is left as the server made it, so that
// target_session_attrs=read-write accepts a primary (a session with
// default_transaction_read_only set looks like a standby to libpq and
// pgx), and so that a pooler in transaction mode never hands a read-only
// session to someone else.

// readOnlyConnector makes read-only connections.
type readOnlyConnector struct{ driver.Connector }

func (c readOnlyConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(*stdlib.Conn)
	if !ok {
		conn.Close()
		return nil, errors.New("read-only connection: not a pgx connection")
	}
	return &readOnlyConn{Conn: sc}, nil
}

// readOnlyConn is a pgx connection whose every statement is read-only.
// database/sql uses a connection from one goroutine at a time.
type readOnlyConn struct {
	*stdlib.Conn
	inTx bool
}

func (c *readOnlyConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx begins a read-only transaction, whatever opts ask.
func (c *readOnlyConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	opts.ReadOnly = true
	tx, err := c.Conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.inTx = true
	return &readOnlyTx{Tx: tx, c: c}, nil
}

type readOnlyTx struct {
	driver.Tx
	c *readOnlyConn
}

func (t *readOnlyTx) Commit() error {
	t.c.inTx = false
	return t.Tx.Commit()
}

func (t *readOnlyTx) Rollback() error {
	t.c.inTx = false
	return t.Tx.Rollback()
}

// begin opens the read-only transaction of one statement.
func (c *readOnlyConn) begin(ctx context.Context) error {
	_, err := c.Conn.Conn().Exec(ctx, "BEGIN READ ONLY")
	if err != nil && pgconn.SafeToRetry(err) {
		return driver.ErrBadConn
	}
	return err
}

// end commits the statement's transaction (rolls it back after an error).
func (c *readOnlyConn) end(failed bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := "COMMIT"
	if failed {
		q = "ROLLBACK"
	}
	_, err := c.Conn.Conn().Exec(ctx, q)
	return err
}

func (c *readOnlyConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.inTx {
		return c.Conn.ExecContext(ctx, query, args)
	}
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	res, err := c.Conn.ExecContext(ctx, query, args)
	if endErr := c.end(err != nil); err == nil {
		err = endErr
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (c *readOnlyConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.inTx {
		return c.Conn.QueryContext(ctx, query, args)
	}
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	rows, err := c.Conn.QueryContext(ctx, query, args)
	if err != nil {
		_ = c.end(true)
		return nil, err
	}
	return &readOnlyRows{Rows: rows.(*stdlib.Rows), c: c}, nil
}

// PrepareContext prepares a statement whose executions outside a
// transaction are read-only too.
func (c *readOnlyConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.Conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &readOnlyStmt{Stmt: st.(*stdlib.Stmt), c: c, query: query}, nil
}

func (c *readOnlyConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

type readOnlyStmt struct {
	*stdlib.Stmt
	c     *readOnlyConn
	query string
}

func (s *readOnlyStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.query, args)
}

func (s *readOnlyStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.query, args)
}

// readOnlyRows ends the statement's transaction when they are closed.
type readOnlyRows struct {
	*stdlib.Rows
	c      *readOnlyConn
	closed bool
}

func (r *readOnlyRows) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.Rows.Close()
	if endErr := r.c.end(err != nil); err == nil {
		err = endErr
	}
	return err
}
