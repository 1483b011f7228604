"""Database access for the stand-in: sqlite3 for SQLite, the psql client for
PostgreSQL (psycopg2 is not assumed to be installed)."""

import os
import re
import shutil
import sqlite3
import subprocess


class DatabaseError(Exception):
    """A PostgreSQL error reported by psql."""


class UniqueViolation(DatabaseError):
    """SQLSTATE 23505, named as psycopg2 names it in a traceback."""


class UndefinedTable(DatabaseError):
    """SQLSTATE 42P01."""


for _cls in (DatabaseError, UniqueViolation, UndefinedTable):
    _cls.__module__ = "psycopg2.errors"

_SQLSTATES = {"23505": UniqueViolation, "42P01": UndefinedTable}


def quote(v):
    """Renders a Python value as an SQL literal (both engines)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def bind(sql, params):
    """Replaces each ? outside quotes with the next parameter."""
    if not params:
        return sql
    out, i, in_quote = [], 0, False
    for ch in sql:
        if ch == "'":
            in_quote = not in_quote
        if ch == "?" and not in_quote:
            out.append(quote(params[i]))
            i += 1
        else:
            out.append(ch)
    return "".join(out)


class SQLite:
    engine = "sqlite"

    def __init__(self, args):
        self.path = args["database"]
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys = ON")

    def query(self, sql, params=()):
        return [tuple(r) for r in self.conn.execute(bind(sql, params)).fetchall()]

    def run(self, sql, params=()):
        self.conn.execute(bind(sql, params))

    def script(self, statements):
        """Runs statements (each a string) in one transaction."""
        try:
            self.conn.executescript("BEGIN TRANSACTION;\n" + ";\n".join(statements) + ";\nCOMMIT;")
        except Exception:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def statements(self, statements):
        """Runs statements one by one, each in its own transaction."""
        for s in statements:
            self.conn.execute(s)


def _psql():
    found = shutil.which("psql")
    if found:
        return found
    for root in sorted(os.listdir("/usr/lib/postgresql"), reverse=True) if os.path.isdir("/usr/lib/postgresql") else []:
        p = os.path.join("/usr/lib/postgresql", root, "bin", "psql")
        if os.path.exists(p):
            return p
    raise RuntimeError("psql not found: the stand-in reaches PostgreSQL through it")


class Postgres:
    engine = "postgres"

    def __init__(self, args):
        self.env = dict(os.environ)
        keys = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
                "dbname": "PGDATABASE", "database": "PGDATABASE", "sslmode": "PGSSLMODE"}
        for k, env in keys.items():
            if k in args and args[k] is not None:
                self.env[env] = str(args[k])
        if "dbname" in args:
            self.env["PGDATABASE"] = str(args["dbname"])
        self.env["PGAPPNAME"] = "fake synapse"
        self.psql = _psql()
        self.query("SELECT 1")

    def _exec(self, argv, stdin=None):
        cmd = [self.psql, "-X", "-q", "-A", "-t", "-F", "\x1f", "-R", "\x1e",
               "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"] + argv
        p = subprocess.run(cmd, input=stdin, env=self.env, capture_output=True, text=True)
        if p.returncode != 0:
            raise _error(p.stderr)
        return p.stdout

    def query(self, sql, params=()):
        out = self._exec(["-c", bind(sql, params)])
        rows = []
        for rec in out.split("\x1e"):
            rec = rec.strip("\n")
            if rec == "":
                continue
            rows.append(tuple(_value(v) for v in rec.split("\x1f")))
        return rows

    def run(self, sql, params=()):
        self._exec(["-c", bind(sql, params)])

    def script(self, statements):
        self._exec(["-1", "-f", "-"], stdin=";\n".join(statements) + ";\n")

    def statements(self, statements):
        argv = []
        for s in statements:
            argv += ["-c", s]
        self._exec(argv)


def _value(v):
    if re.fullmatch(r"-?[0-9]+", v):
        return int(v)
    return v


def _error(stderr):
    text = stderr.strip()
    m = re.search(r"ERROR:\s+([0-9A-Z]{5}):\s+(.*)", text, re.S)
    if not m:
        return DatabaseError(text)
    msg = m.group(2)
    # Keep the message and its DETAIL line, as psycopg2 renders them.
    lines = [l for l in msg.splitlines() if not l.startswith(("LOCATION:", "psql:", "STATEMENT:"))]
    return _SQLSTATES.get(m.group(1), DatabaseError)("\n".join(l.strip() for l in lines))


def connect(database):
    """Opens the database of a config's database section."""
    name = database.get("name", "sqlite3")
    args = database.get("args") or {}
    if name == "sqlite3":
        return SQLite(args)
    if name == "psycopg2":
        return Postgres(args)
    raise ValueError("Unsupported database type '%s'" % name)
