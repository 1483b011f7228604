package main

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"hsops/internal/cli"
	"hsops/internal/porter"
)

// progress shows a port's progress: on a terminal an overall bar and a bar
// per table being copied (redrawn at most five times a second); otherwise
// Synapse's plain lines ("<state>...", "<table>: <perc>% (<done>/<total>)",
// at most one every few seconds per table); with --json one object per event.
type progress struct {
	o      *options
	jsonl  *cli.JSONLines
	tty    bool
	mu     sync.Mutex
	start  time.Time
	state  string
	tables map[string]*tableProgress
	lines  int
	last   time.Time
	bytes  int64
	// base is the rows ported by earlier runs, copyStart when this run's
	// copy began (the "plan" event).
	base      int64
	copyStart time.Time
	// closing: the last redraw, after the copy.
	closing bool
	// rebuilt of toRebuild: the indexes and constraints dropped for the
	// copy and put back.
	rebuilt, toRebuild int64
}

type tableProgress struct {
	done, total       int64
	started, finished bool
	lastLine          time.Time
}

func newProgress(o *options) *progress {
	return &progress{o: o, jsonl: cli.NewJSONLines(o.stdout), tty: cli.IsTerminal(o.stderr) && !o.json,
		start: time.Now(), tables: map[string]*tableProgress{}}
}

func (p *progress) event(ev porter.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.track(ev)
	if p.o.json {
		// The bookkeeping above still says what an interruption kept.
		p.jsonl.Emit(ev)
		return
	}
	switch ev.Type {
	case "state":
		if p.tty {
			p.redraw(true)
		} else {
			fmt.Fprintf(p.o.stdout, "%s...\n", ev.State)
		}
	case "note", "warning":
		p.clear()
		prefix := "note"
		if ev.Type == "warning" {
			prefix = "warning"
		}
		if ev.Table != "" {
			fmt.Fprintf(p.o.stderr, "%s: %s: %s\n", prefix, ev.Table, ev.Message)
		} else {
			fmt.Fprintf(p.o.stderr, "%s: %s\n", prefix, ev.Message)
		}
		p.redraw(true)
	case "plan":
		if !p.tty {
			fmt.Fprintf(p.o.stdout, "%d rows to copy (%d already ported)\n", ev.Total-ev.Done, ev.Done)
		}
	case "rebuilt":
		if p.tty {
			p.redraw(false)
		} else if p.o.verbose || ev.Done == ev.Total {
			fmt.Fprintf(p.o.stdout, "%s: %s rebuilt (%d/%d)\n", ev.Table, ev.Message, ev.Done, ev.Total)
		}
	case "table", "batch", "table_done":
		t := p.tables[ev.Table]
		if p.tty {
			p.redraw(ev.Type == "table_done")
			return
		}
		now := time.Now()
		if ev.Type == "table_done" || p.o.verbose || now.Sub(t.lastLine) >= 3*time.Second {
			if t.total > 0 && (ev.Type != "table" || p.o.verbose) {
				fmt.Fprintf(p.o.stdout, "%s: %d%% (%d/%d)\n", ev.Table, t.done*100/t.total, t.done, t.total)
			}
			t.lastLine = now
		}
	}
}

// track keeps the state, the plan and each table's progress.
func (p *progress) track(ev porter.Event) {
	switch ev.Type {
	case "state":
		p.state = ev.State
	case "plan":
		p.base, p.copyStart = ev.Done, time.Now()
	case "pending":
		p.tables[ev.Table] = &tableProgress{done: ev.Done, total: ev.Total}
	case "rebuilt":
		p.rebuilt, p.toRebuild = ev.Done, ev.Total
	case "table", "batch", "table_done":
		t := p.tables[ev.Table]
		if t == nil {
			t = &tableProgress{}
			p.tables[ev.Table] = t
		}
		t.started = true
		t.done, t.total = ev.Done, ev.Total
		if ev.Type == "table_done" {
			t.finished = true
		}
		p.bytes += ev.Bytes
	}
}

// committed says what an interrupted port has kept, from the events of
// the copy: each table_done follows its table's last commit, and the
// append-only tables commit every batch with its bookkeeping.
func (p *progress) committed() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.copyStart.IsZero() {
		return "no table was copied yet"
	}
	var finished, started int
	for _, t := range p.tables {
		switch {
		case t.finished:
			finished++
		case t.started:
			started++
		}
	}
	msg := fmt.Sprintf("%d of %d tables copied by this run", finished, len(p.tables))
	switch {
	case started == 1:
		msg += "; the one being copied keeps its committed batches"
	case started > 1:
		msg += fmt.Sprintf("; the %d being copied keep their committed batches", started)
	}
	return msg
}

// rateWindow is how long the copy runs before its rates are shown: the
// first batches land within milliseconds of the start (and bytes before
// rows), so a rate over them says nothing (it was millions of rows/s).
const rateWindow = 2 * time.Second

// speed says the copy's rates and the time left, from what this run copied
// (rows, bytes) in elapsed, with left rows to go; "measuring" until
// rateWindow has passed and a row was copied (final: the copy is over, its
// rates are what they are).
func speed(rows, left, bytes int64, elapsed time.Duration, final bool) string {
	if (elapsed < rateWindow && !final) || rows <= 0 || elapsed <= 0 {
		return "rate: measuring"
	}
	secs := elapsed.Seconds()
	rate := float64(rows) / secs
	eta := time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf("%.0f rows/s  %.1f MB/s  ETA %s", rate, float64(bytes)/1e6/secs, eta)
}

func bar(done, total int64, width int) string {
	if total <= 0 {
		return "[" + strings.Repeat(" ", width) + "]"
	}
	n := int(done * int64(width) / total)
	if n > width {
		n = width
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(" ", width-n) + "]"
}

// clear erases what the last redraw printed.
func (p *progress) clear() {
	if p.tty && p.lines > 0 {
		fmt.Fprintf(p.o.stderr, "\x1b[%dA\x1b[J", p.lines)
		p.lines = 0
	}
}

func (p *progress) redraw(force bool) {
	if !p.tty || (!force && time.Since(p.last) < 200*time.Millisecond) {
		return
	}
	p.last = time.Now()
	p.clear()
	var done, total int64
	var active []string
	finished := 0
	for name, t := range p.tables {
		done += t.done
		total += t.total
		if t.finished {
			finished++
		} else if t.started {
			active = append(active, name)
		}
	}
	sort.Strings(active)
	// Rates count this run's rows since the copy began, not what earlier
	// runs ported.
	since := p.copyStart
	if since.IsZero() {
		since = p.start
	}
	elapsed := time.Since(since)
	var b strings.Builder
	fmt.Fprintf(&b, "%s...\n", p.state)
	if total > 0 {
		fmt.Fprintf(&b, "%s %3d%% %d/%d rows  %s  (%d tables done)\n",
			bar(done, total, 30), done*100/total, done, total, speed(done-p.base, total-done, p.bytes, elapsed, p.closing), finished)
	}
	if p.toRebuild > 0 {
		fmt.Fprintf(&b, "indexes and constraints rebuilt: %d of %d\n", p.rebuilt, p.toRebuild)
	}
	for i, name := range active {
		if i == 8 {
			fmt.Fprintf(&b, "  ... and %d more tables\n", len(active)-8)
			break
		}
		t := p.tables[name]
		pct := int64(0)
		if t.total > 0 {
			pct = t.done * 100 / t.total
		}
		fmt.Fprintf(&b, "  %-36s %s %3d%% (%d/%d)\n", name, bar(t.done, t.total, 20), pct, t.done, t.total)
	}
	out := b.String()
	p.lines = strings.Count(out, "\n")
	fmt.Fprint(p.o.stderr, out)
}

func (p *progress) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.closing = true
		p.redraw(true)
	}
}
