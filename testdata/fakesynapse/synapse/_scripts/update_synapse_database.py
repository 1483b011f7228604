"""A stand-in for Synapse's update_synapse_database, for hsops' tests.

It honours the real script's command line and behaviour (spec section 3.1):
it reads a homeserver config (JSON, or YAML when PyYAML is installed),
upgrades each configured database from its schema_version to SCHEMA_VERSION
with the delta files under synapse/storage/schema/<db>/delta/<v>/ (recorded in
applied_schema_deltas, compat version raised first), and with
--run-background-updates runs the queued background updates, logging as
Synapse does. Like Synapse it exits 1 with a traceback when a delta fails,
and when background updates fail five times in a row it logs
"RuntimeError: 5 back-to-back background update failures; aborting." and
keeps running with nothing to do until it is signalled.

Environment (for tests):
  FAKE_SYNAPSE_FAIL_DELTA=84/01_room_event_counts.sql  that delta fails
  FAKE_SYNAPSE_FAIL_UPDATE=NAME                        that background update fails
  FAKE_SYNAPSE_BATCH_SIZE=N                            rows per batch (default 100)
  FAKE_SYNAPSE_BATCH_MS=N                              extra time each batch takes
"""

import argparse
import json
import logging
import os
import signal
import sys
import time

from synapse.storage import _fakedb
from synapse.storage.schema import SCHEMA_COMPAT_VERSION, SCHEMA_VERSION

logger = logging.getLogger("synapse.storage.prepare_database")
bg_logger = logging.getLogger("synapse.storage.background_updates")
proc_logger = logging.getLogger("synapse.metrics.background_process_metrics")

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "storage", "schema")

BOOKKEEPING = [
    "CREATE TABLE IF NOT EXISTS schema_version (Lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE, version INTEGER NOT NULL, upgraded BOOL NOT NULL, CHECK (Lock='X'))",
    "CREATE TABLE IF NOT EXISTS schema_compat_version (Lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE, compat_version INTEGER NOT NULL, CHECK (Lock='X'))",
    "CREATE TABLE IF NOT EXISTS applied_schema_deltas (version INTEGER NOT NULL, file TEXT NOT NULL, UNIQUE(version, file))",
    "CREATE TABLE IF NOT EXISTS applied_module_schemas (module_name TEXT NOT NULL, file TEXT NOT NULL, UNIQUE(module_name, file))",
]


class PrepareDatabaseException(Exception):
    pass


class UpgradeDatabaseException(PrepareDatabaseException):
    pass


for _cls in (PrepareDatabaseException, UpgradeDatabaseException):
    _cls.__module__ = "synapse.storage.prepare_database"


def load_config(path):
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError:
        import yaml  # a real Synapse has it; the tests write JSON

        return yaml.safe_load(text)


def databases_of(config):
    """The physical databases: (label, section, data_stores)."""
    if "database" in config and "databases" in config:
        raise Exception("Can't specify both 'database' and 'databases' in config")
    if "databases" in config:
        out = []
        for label, section in config["databases"].items():
            out.append((label, section, section.get("data_stores") or ["main", "state"]))
        return out
    section = config.get("database") or {"name": "sqlite3", "args": {"database": config.get("database_path", "homeserver.db")}}
    return [("master", section, ["main", "state"])]


def prepare_database(conn, stores, config):
    cur_stores = repr(stores)
    logger.info("%s: Checking existing schema version", cur_stores)
    conn.statements(BOOKKEEPING)
    rows = conn.query("SELECT version, upgraded FROM schema_version")
    if not rows:
        logger.info("%s: Initialising new database", cur_stores)
        raise PrepareDatabaseException("Could not find a suitable base set of full schemas")
    version, upgraded = rows[0][0], rows[0][1] in (1, True, "t", "true")
    compat = conn.query("SELECT compat_version FROM schema_compat_version")
    compat = compat[0][0] if compat else None
    applied = {r[0] for r in conn.query("SELECT file FROM applied_schema_deltas WHERE version >= ?", (version,))}
    logger.info("%s: Existing schema is %i (+%i deltas)", cur_stores, version, len(applied))
    worker = config.get("worker_app") not in (None, "synapse.app.homeserver")
    if worker and version < SCHEMA_VERSION:
        raise UpgradeDatabaseException(
            "Expected database schema version %i but got %i: run the main synapse process to upgrade the database schema before starting worker processes."
            % (SCHEMA_VERSION, version))
    if compat is not None and compat > SCHEMA_VERSION:
        raise ValueError("Cannot use this database as it is too new for the server to understand")
    if compat is None or compat < SCHEMA_COMPAT_VERSION:
        conn.script(["DELETE FROM schema_compat_version",
                     "INSERT INTO schema_compat_version (compat_version) VALUES (%d)" % SCHEMA_COMPAT_VERSION])
    start = version if upgraded else version + 1
    fail = os.environ.get("FAKE_SYNAPSE_FAIL_DELTA", "")
    for v in range(start, SCHEMA_VERSION + 1):
        logger.info("Applying schema deltas for v%d", v)
        conn.script(["DELETE FROM schema_version",
                     "INSERT INTO schema_version (version, upgraded) VALUES (%d, TRUE)" % v])
        entries = []
        for d in ["common"] + list(stores):
            directory = os.path.join(SCHEMA_DIR, d, "delta", str(v))
            if not os.path.isdir(directory):
                continue
            for name in os.listdir(directory):
                entries.append((name, os.path.join(directory, name)))
        entries.sort()
        for name, path in entries:
            relative = "%d/%s" % (v, name)
            if relative in applied:
                continue
            if name.endswith(".sql"):
                logger.info("Applying schema %s", relative)
            elif name.endswith(".sql." + conn.engine):
                logger.info("Applying engine-specific schema %s", relative)
            elif name.endswith(".sql.sqlite") or name.endswith(".sql.postgres"):
                continue
            else:
                logger.warning("Found directory entry that did not end in .py or .sql: %s", relative)
                continue
            with open(path) as f:
                sql = f.read()
            statements = [sql]
            if relative == fail:
                # A statement that fails on both engines, inside the file's
                # transaction: the file is rolled back and not recorded.
                statements.append("INSERT INTO fake_synapse_missing_table VALUES (1)")
            statements.append("INSERT INTO applied_schema_deltas (version, file) VALUES (%d, %s)" % (v, _fakedb.quote(relative)))
            conn.script(statements)
    logger.info("Schema now up to date")


# Background updates.

def index_handler(name, table, columns, unique=False, replaces=None):
    def run(conn, progress, batch_size):
        bg_logger.info("Adding index %s to %s", name, table)
        kind = "UNIQUE INDEX" if unique else "INDEX"
        if conn.engine == "postgres":
            stmts = ["DROP INDEX IF EXISTS %s" % name,
                     "CREATE %s CONCURRENTLY %s ON %s (%s)" % (kind, name, table, ", ".join(columns))]
        else:
            stmts = ["CREATE %s IF NOT EXISTS %s ON %s (%s)" % (kind, name, table, ", ".join(columns))]
        if replaces:
            stmts.append("DROP INDEX IF EXISTS %s" % replaces)
        if fails(name):
            stmts.insert(0, "INSERT INTO fake_synapse_missing_table VALUES (1)")
        conn.statements(stmts)
        conn.run("DELETE FROM background_updates WHERE update_name = ?", (name,))
        return 1
    return run


def populate_room_event_counts(conn, progress, batch_size):
    # Walks the rooms as Synapse's populate_stats_process_rooms does (by
    # room_id, saving last_room_id), under its name.
    name = "populate_stats_process_rooms"
    last = progress.get("last_room_id", "")
    rooms = [r[0] for r in conn.query("SELECT room_id FROM rooms WHERE room_id > ? ORDER BY room_id LIMIT %d" % batch_size, (last,))]
    if not rooms:
        conn.run("DELETE FROM background_updates WHERE update_name = ?", (name,))
        return 0
    stmts = []
    if fails(name):
        stmts.append("INSERT INTO fake_synapse_missing_table VALUES (1)")
    for room in rooms:
        stmts.append("INSERT INTO room_event_counts (room_id, events) SELECT %s, count(*) FROM events WHERE room_id = %s"
                     % (_fakedb.quote(room), _fakedb.quote(room)))
    stmts.append("UPDATE background_updates SET progress_json = %s WHERE update_name = %s"
                 % (_fakedb.quote(json.dumps({"last_room_id": rooms[-1]})), _fakedb.quote(name)))
    conn.script(stmts)
    return len(rooms)


def fails(name):
    return os.environ.get("FAKE_SYNAPSE_FAIL_UPDATE", "") == name


HANDLERS = {
    "state_group_edges_unique_idx": index_handler(
        "state_group_edges_unique_idx", "state_group_edges", ["state_group", "prev_state_group"],
        unique=True, replaces="state_group_edges_idx"),
    "populate_stats_process_rooms": populate_room_event_counts,
    "room_event_counts_room_id_idx": index_handler(
        "room_event_counts_room_id_idx", "room_event_counts", ["room_id"], unique=True),
}


class Updater:
    def __init__(self, conn, label):
        self.conn = conn
        self.label = label
        self.batch_size = int(os.environ.get("FAKE_SYNAPSE_BATCH_SIZE", "100"))
        self.batch_ms = int(os.environ.get("FAKE_SYNAPSE_BATCH_MS", "0"))
        self.totals = {}

    def run_background_updates(self):
        bg_logger.info("Starting background schema updates for database %s", self.label)
        failures = 0
        while True:
            try:
                finished = self.do_next_background_update()
                failures = 0
            except Exception as e:
                bg_logger.exception("Error doing update: %s", e)
                failures += 1
                if failures >= 5:
                    raise RuntimeError("5 back-to-back background update failures; aborting.")
            else:
                if finished:
                    bg_logger.info("No more background updates to do. Unscheduling background update task.")
                    return

    def do_next_background_update(self):
        rows = self.conn.query("SELECT update_name, depends_on FROM background_updates ORDER BY ordering, update_name")
        if not rows:
            return True
        pending = {r[0] for r in rows}
        for name, depends_on in rows:
            if depends_on and depends_on in pending:
                bg_logger.info("Not starting on bg update %s until %s is done", name, depends_on)
                continue
            break
        else:
            raise Exception("Unable to find a background update which doesn't depend on another: dependency cycle?")
        bg_logger.info("Starting update batch on background update '%s'", name)
        handler = HANDLERS[name]
        progress = json.loads(self.conn.query("SELECT progress_json FROM background_updates WHERE update_name = ?", (name,))[0][0])
        t0 = time.time()
        if self.batch_ms:
            time.sleep(self.batch_ms / 1000.0)
        items = handler(self.conn, progress, self.batch_size)
        ms = (time.time() - t0) * 1000
        total = self.totals.get(name, 0) + items
        self.totals[name] = total
        bg_logger.info(
            "Running background update %r. Processed %r items in %rms. (total_rate=%r/ms, current_rate=%r/ms, total_updated=%r, batch_size=%r)",
            name, items, int(ms), 0.0, items / ms if ms else 0.0, total, self.batch_size)
        return False


def hang():
    """What Synapse does after its updater aborted: the reactor keeps running
    with nothing to do, and a signal stops it (exit 0)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


def main():
    parser = argparse.ArgumentParser(
        description="Updates a synapse database to the latest schema and optionally runs background updates on it.")
    parser.add_argument("-v", action="store_true")
    parser.add_argument("--database-config", type=argparse.FileType("r"), required=True,
                        help="database config file")
    parser.add_argument("--run-background-updates", action="store_true", required=False,
                        help="run background updates after upgrading the database schema")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.v else logging.INFO,
                        format="%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s")
    path = args.database_config.name
    args.database_config.close()
    config = load_config(path)
    conns = []
    for label, section, stores in databases_of(config):
        conn = _fakedb.connect(section)
        prepare_database(conn, stores, config)
        conns.append((label, conn, stores))
    if not args.run_background_updates:
        return
    try:
        # The main database's updater first, then the state database's.
        conns.sort(key=lambda c: 0 if "main" in c[2] else 1)
        for label, conn, _ in conns:
            Updater(conn, label).run_background_updates()
    except Exception:
        proc_logger.exception("Background process 'background_updates' threw an exception")
        hang()


if __name__ == "__main__":
    main()
