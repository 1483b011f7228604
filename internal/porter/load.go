package porter

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// A load copies tables and puts back what was dropped for their copy, with
// up to jobs tasks at once. Its tasks, and when each may start:
//
//   - the copy of a table, once every table it references by foreign key
//     is done (copied, and its indexes back: the triggers of the
//     membership tables look events up by event_id as each row lands, and
//     a key that was kept checks its referenced rows);
//   - an index (or primary key, unique constraint) of a table, once the
//     table is copied; several at once on one table;
//   - a foreign key, once its table is done and so is the table it
//     references (it is validated against complete rows and indexes).
//
// Among the tasks that may start, index builds of tables that others wait
// for come first (unique ones first), then copies (of tables that others
// wait for, then event_search, then the largest), then the other index
// builds, then foreign keys.
type load struct {
	jobs int
	// session runs fn on a target session set up for the port.
	session func(ctx context.Context, fn func(*pgx.Conn) error) error
	copy    func(ctx context.Context, t *Table) error
	record  bool
	emit    func(Event)

	mu      sync.Mutex
	nodes   map[string]*loadNode
	running int
}

type loadNode struct {
	name string
	// t is nil for a table that is only rebuilt (no copy in this run).
	t       *Table
	size    int64
	refs    []string
	waiters int
	// copying/copied: the copy's state; pendingIdx counts index builds not
	// finished; idx and fks are the tasks not started yet.
	copying, copied bool
	pendingIdx      int
	idx, fks        []deferredObject
	pendingFK       int
}

func (n *loadNode) done() bool { return n.copied && n.pendingIdx == 0 }

type loadTask struct {
	node *loadNode
	obj  *deferredObject
}

// loadStats is what a load did: the indexes and constraints put back and
// their build time added up (several run at once), and when the last table
// with rows to copy was copied.
type loadStats struct {
	Rebuilt      int
	RebuildTotal int
	RebuildTime  time.Duration
	CopyEnd      time.Time
}

// run executes the load. objs are every deferred object to put back,
// including those of tables not copied in this run.
func (l *load) run(ctx context.Context, tables []*Table, objs []deferredObject) (loadStats, error) {
	l.plan(tables, objs)
	stats := loadStats{RebuildTotal: len(objs)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		first error
		once  sync.Once
		wake  = make(chan struct{}, 1)
	)
	fail := func(err error) { once.Do(func() { first = err; cancel() }) }
	for ctx.Err() == nil {
		l.mu.Lock()
		var task loadTask
		ok, finished := false, false
		if l.running < l.jobs {
			task, ok, finished = l.next()
		}
		if finished || !ok && l.running == 0 {
			l.mu.Unlock()
			if !finished {
				fail(fmt.Errorf("the load is stuck: %s", l.describeLeft()))
			}
			break
		}
		if !ok {
			// Every session is busy, or what is left waits for a task
			// running now: wait for one to end.
			l.mu.Unlock()
			select {
			case <-wake:
			case <-ctx.Done():
			}
			continue
		}
		l.running++
		l.mu.Unlock()
		wg.Add(1)
		go func(task loadTask) {
			defer wg.Done()
			err := l.do(ctx, task, &stats)
			l.mu.Lock()
			l.running--
			l.finish(task)
			l.mu.Unlock()
			if err != nil {
				fail(err)
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}(task)
	}
	wg.Wait()
	if first != nil {
		return stats, first
	}
	return stats, ctx.Err()
}

// plan builds the load's graph: a node per table to copy or with objects
// to put back, its objects, and how many tables wait for it.
func (l *load) plan(tables []*Table, objs []deferredObject) {
	l.nodes = map[string]*loadNode{}
	for _, t := range tables {
		l.nodes[t.Name] = &loadNode{name: t.Name, t: t, size: t.remaining, refs: t.Refs}
	}
	// A table's unique indexes first: foreign keys and lookups of the
	// tables waiting for it use them.
	objs = append([]deferredObject(nil), objs...)
	sort.SliceStable(objs, func(i, j int) bool { return objs[i].Kind != kindIndex && objs[j].Kind == kindIndex })
	for _, o := range objs {
		n := l.nodes[o.Table]
		if n == nil {
			n = &loadNode{name: o.Table, copied: true}
			l.nodes[o.Table] = n
		}
		if o.isIndex() {
			n.idx = append(n.idx, o)
			n.pendingIdx++
		} else {
			n.fks = append(n.fks, o)
			n.pendingFK++
		}
	}
	for _, n := range l.nodes {
		for _, r := range n.refs {
			if rn := l.nodes[r]; rn != nil && r != n.name {
				rn.waiters++
			}
		}
	}
}

// candidate is the best task found so far by next.
type candidate struct {
	task loadTask
	rank int
	size int64
}

func (c *candidate) consider(t loadTask, rank int, size int64) {
	if rank > c.rank || rank == c.rank && size > c.size {
		*c = candidate{task: t, rank: rank, size: size}
	}
}

// next picks the next task; finished when nothing is left at all. Called
// with l.mu held.
func (l *load) next() (task loadTask, ok, finished bool) {
	best := candidate{rank: -1}
	var blocked []*loadNode
	left := false
	names := make([]string, 0, len(l.nodes))
	for name := range l.nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := l.nodes[name]
		nodeLeft, isBlocked := l.considerNode(n, &best)
		left = left || nodeLeft
		if isBlocked {
			blocked = append(blocked, n)
		}
	}
	if best.rank < 0 && l.running == 0 && len(blocked) > 0 {
		// A cycle of references: its copies go without waiting.
		sort.Slice(blocked, func(i, j int) bool { return blocked[i].size > blocked[j].size })
		return loadTask{node: blocked[0]}, true, false
	}
	if best.rank < 0 {
		return loadTask{}, false, !left && l.running == 0
	}
	return l.take(best.task), true, false
}

// considerNode offers best the tasks of one table that can start now: its
// copy (once the tables it references are done), its next index, or a
// foreign key whose referenced table is done. left: the table has work
// left; blocked: its copy waits for other tables.
func (l *load) considerNode(n *loadNode, best *candidate) (left, blocked bool) {
	if !n.copied {
		if n.copying {
			return true, false
		}
		if !l.refsDone(n) {
			return true, true
		}
		rank := 2
		switch {
		case n.waiters > 0:
			rank = 4
		case n.t != nil && n.t.Strategy == Search:
			// The slowest rows to write (to_tsvector), and a costly index
			// after them: start them first.
			rank = 3
		}
		best.consider(loadTask{node: n}, rank, n.size)
		return true, false
	}
	if len(n.idx) > 0 {
		left = true
		rank := 1
		if n.waiters > 0 {
			rank = 5
		}
		best.consider(loadTask{node: n, obj: &n.idx[0]}, rank, n.size)
	}
	left = left || n.pendingIdx > 0 || n.pendingFK > 0
	if len(n.fks) > 0 && n.pendingIdx == 0 {
		for i := range n.fks {
			if rn := l.nodes[n.fks[i].RefTable]; rn == nil || rn == n || rn.done() {
				best.consider(loadTask{node: n, obj: &n.fks[i]}, 0, n.size)
				break
			}
		}
	}
	return left, false
}

// take takes a chosen task off its table's lists.
func (l *load) take(t loadTask) loadTask {
	n := t.node
	switch {
	case t.obj == nil:
		n.copying = true
	case t.obj.isIndex():
		o := *t.obj
		n.idx = n.idx[1:]
		t.obj = &o
	default:
		for i := range n.fks {
			if &n.fks[i] == t.obj {
				o := n.fks[i]
				n.fks = append(n.fks[:i:i], n.fks[i+1:]...)
				t.obj = &o
				break
			}
		}
	}
	return t
}

// describeLeft says what a stuck load has left (called with l.mu held).
func (l *load) describeLeft() string {
	var left []string
	for name, n := range l.nodes {
		if !n.copied || n.pendingIdx > 0 || n.pendingFK > 0 {
			left = append(left, fmt.Sprintf("%s (copied %v, %d indexes and %d foreign keys to put back)", name, n.copied, n.pendingIdx, n.pendingFK))
		}
	}
	sort.Strings(left)
	return strings.Join(left, ", ")
}

func (l *load) refsDone(n *loadNode) bool {
	for _, r := range n.refs {
		if rn := l.nodes[r]; rn != nil && rn != n && !rn.done() {
			return false
		}
	}
	return true
}

// finish records a finished task (called with l.mu held).
func (l *load) finish(task loadTask) {
	n := task.node
	switch {
	case task.obj == nil:
		n.copied = true
		n.copying = false
	case task.obj.isIndex():
		n.pendingIdx--
	default:
		n.pendingFK--
	}
}

func (l *load) do(ctx context.Context, task loadTask, stats *loadStats) error {
	if task.obj == nil {
		if err := l.copy(ctx, task.node.t); err != nil {
			return err
		}
		if task.node.size > 0 {
			l.mu.Lock()
			stats.CopyEnd = time.Now()
			l.mu.Unlock()
		}
		return nil
	}
	o := *task.obj
	l.emit(Event{Type: "rebuild", Table: o.Table, Message: o.String()})
	t0 := time.Now()
	// Parallel maintenance workers fill the sessions the load leaves idle:
	// while other tasks run they would only compete with them.
	l.mu.Lock()
	workers := l.jobs - l.running
	l.mu.Unlock()
	err := l.session(ctx, func(pc *pgx.Conn) error {
		if err := rebuildSession(ctx, pc, workers); err != nil {
			return fmt.Errorf("set up the session for index builds: %w", err)
		}
		return rebuild(ctx, pc, o, l.record)
	})
	if err != nil {
		return err
	}
	l.mu.Lock()
	stats.Rebuilt++
	stats.RebuildTime += time.Since(t0)
	done := stats.Rebuilt
	l.mu.Unlock()
	l.emit(Event{Type: "rebuilt", Table: o.Table, Message: o.String(), Done: int64(done), Total: int64(stats.RebuildTotal)})
	return nil
}
