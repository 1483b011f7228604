package journey

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/diff"

	"hsops/internal/scripttest"
)

// Each journey's transcript is compared with a committed golden file,
// testdata/<TestName>.golden (a subtest's "/" written as "-"), once its
// volatile parts are masked. go test ./journey -update rewrites the golden
// files from what the tools print (review them with git diff).
//
// What is masked is listed here and nowhere else: masks rewrite what
// changes from run to run into a fixed placeholder, and unordered blocks
// sort the lines that parallel work prints in any order. Everything else
// (counts of rows, users, messages, hits; schema versions; messages and
// their wording) is compared as printed.

// goldenJourneys are the journeys with a golden file: all of them.
var goldenJourneys = regexp.MustCompile(`^TestJourney_`)

// rehearsals are the journeys that rehearse upgrades (rehearse_test.go),
// and whileServing the one whose rehearsals copy a database that hsload
// writes to meanwhile.
var (
	rehearsals   = regexp.MustCompile(`^TestJourney_Rehearse`)
	whileServing = regexp.MustCompile(`^TestJourney_RehearseWhileServing(/|$)`)
)

// A mask replaces every match of re with repl; a numbered one with
// fmt.Sprintf(repl, n), n counting the distinct matches in order of first
// appearance, so that the golden file still shows which values are equal.
// A mask with only applies to the tests whose name it matches.
type mask struct {
	what     string
	re       *regexp.Regexp
	repl     string
	numbered bool
	only     *regexp.Regexp
}

// masks apply in order: a rate before the durations (its "/s" is not a
// duration), and the columns next to a masked duration after them.
var masks = []mask{
	{"the PostgreSQL server's user, host and port (internal/pgtest's cluster, or HSOPS_TEST_PG_URL's server)", regexp.MustCompile(`\bpostgresql://[^/\s]+/`), "postgresql://<server>/", false, nil},
	{"loopback ports", regexp.MustCompile(`\b127\.0\.0\.1:\d+`), "127.0.0.1:<port>", false, nil},
	{"process ids", regexp.MustCompile(`\bpid \d+`), "pid <pid>", false, nil},
	{"throwaway PostgreSQL database names (internal/pgtest)", regexp.MustCompile(`\bhsops_t_[0-9a-f]+`), "hsops_t_<id>", false, nil},
	{"the suffix of a rollback's copy of a pooled test database (_2 when a test before had the same database and left its copy)", regexp.MustCompile(`\b(hsops_t_<id>_before_rollback_\d+_to_\d+)(?:_\d+)?\b`), "${1}[_n]", false, nil},
	{"the scratch copy of a rehearsal of a SQLite database (its directory is named for the time and the pid)", regexp.MustCompile(`\b(hsops-rehearse-\S*?)\d{8}-\d{6}-\d+\b`), "${1}<time>-<pid>", false, nil},
	{"the scratch copy of a rehearsal of a PostgreSQL database (named for its throwaway source, the time and the pid)", regexp.MustCompile(`\b(hsops_rehearse_)hsops_t_[0-9a-f]+_\d{14}_\d+\b`), "${1}hsops_t_<id>_<time>_<pid>", false, nil},
	{"the path of this checkout (the stand-in Synapse's Python is in it)", regexp.MustCompile(`\S*(/testdata/fakesynapse/python)\b`), "<checkout>$1", false, nil},
	{"a rehearsal's slowest schema deltas (which five are slowest, and their order, is timing)", regexp.MustCompile(`(?m)(^ +\(the \d+ slowest and any that failed; -v lists all \d+\)\n)(?:^    \S+ +ok .*\n)+`), "${1}    <the slowest deltas, by their timing>\n", false, rehearsals},
	{"a rehearsal's copy progress (a line every few seconds while the copy runs: as many as its time made)", regexp.MustCompile(`(?m)^ +copied \S+ ?[KMG]?i?B of about \S+ ?[KMG]?i?B\n`), "", false, rehearsals},
	{"a rehearsal's background-update batches (their size follows the time a batch took)", regexp.MustCompile(`\b\d+ batch(es)?\b`), "<n> batches", false, rehearsals},
	{"the rows a rehearsal copied while hsload wrote to the source", regexp.MustCompile(`\b(\d+ tables), \d+ rows;`), "$1, <n> rows;", false, whileServing},
	{"the rooms the rehearsed room-stats update found while hsload was creating rooms", regexp.MustCompile(`\b\d+ items in\b`), "<n> items in", false, whileServing},
	{"their rows in room_stats_state", regexp.MustCompile(`(?m)^( +room_stats_state +0 -> )\d+$`), "${1}<n>", false, whileServing},
	{"the PostgreSQL server's version", regexp.MustCompile(`\bPostgreSQL \d+\.\d+ \([^)]*\)`), "PostgreSQL <version>", false, nil},
	{"the date in the name of the config port_db --switch-config keeps", regexp.MustCompile(`\.sqlite-\d{8}T\d{6}Z\b`), ".sqlite-<time>", false, nil},
	{"the PostgreSQL port in the database section port_db --switch-config shows", regexp.MustCompile(`(?m)^( +port: )"\d+"$`), `${1}"<port>"`, false, nil},
	{"port_db --switch-config's pre-copy passes (another is made while one takes over 10 s: timing)", regexp.MustCompile(`(?m)(?:^   pass \d+: .*\n)+`), "   pass <the pre-copy's passes, as many as their timing made>\n", false, nil},
	{"timestamps", regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?`), "<time>", false, nil},
	{"event ids (random)", regexp.MustCompile(`\$[A-Za-z0-9_-]{43}`), "$<event id>", false, nil},
	{"access tokens register-user prints (random)", regexp.MustCompile(`\bsyt_[A-Za-z0-9]{32}\b`), "syt_<token>", false, nil},
	{"access tokens (random)", regexp.MustCompile(`\bsyt_[A-Za-z0-9]+_[A-Za-z0-9]{20}_[A-Za-z0-9]{6}\b`), "syt_<token>", false, nil},
	{"message digests (over random event ids); equal digests keep equal numbers", regexp.MustCompile(`\bdigest [0-9a-f]{16}\b`), "digest <digest %d>", true, nil},
	{"rates", regexp.MustCompile(`\b\d+(\.\d+)? ?(rows|req|MB)/s\b`), "<rate>", false, nil},
	{"sizes", regexp.MustCompile(`\b\d+(\.\d+)? ?[KMG]i?B\b`), "<size>", false, nil},
	{"durations", regexp.MustCompile(`\b(\d+h)?(\d+m)?\d+(\.\d+)?(ns|µs|us|ms|s)\b|\b\d+ ms\b`), "<dur>", false, nil},
	{"a table's rate column: a decimal number just before a masked duration (hsload http's req/s)", regexp.MustCompile(`\b\d+\.\d+( +<dur>)`), "<rate>$1", false, nil},
	{"a table's rate column: what follows a masked duration in port_db's per-table table (its rows/s: a number, or - when the time rounds to 0)", regexp.MustCompile(`(?m)^(\w+ {2,}[a-z][a-z-]* {2,}\d+ {2,}\d+ +<dur> +)(?:\d+\b|-)`), "$1<rate>", false, nil},
	// The engine runs background updates while it serves, a batch a
	// second: how far it got before synctl stop is timing.
	{"the background updates still pending in update_database status", regexp.MustCompile(`(?m)^background updates: +\d+ pending\n(?: {8,}\S.*\n)*`), "background updates:  <n> pending (how many the engine left is timing)\n", false, nil},
	{"the background updates update_database runs after the engine served for seconds", regexp.MustCompile(`(?m)(?:^running background update .*\n(?:^  .*\n)*)+`), "running background update <those the engine left>\n", false, regexp.MustCompile(`^TestJourney_ClientSyncsOn$`)},
	{"their count", regexp.MustCompile(`\b\d+ background update\(s\) done\b`), "<n> background update(s) done", false, regexp.MustCompile(`^TestJourney_ClientSyncsOn$`)},
	{"the padding before a placeholder, whose width depended on the value", regexp.MustCompile(` +(<[a-z ]+>)`), " $1", false, nil},
}

// unordered are lines printed in a nondeterministic order (by copies or
// checks run in parallel): each run of consecutive lines matching one of
// these is sorted.
var unordered = []*regexp.Regexp{
	// port_db's progress, one line per table as its copy ends.
	regexp.MustCompile(`^\w+: \d+% \(\d+/\d+\)$`),
	// port_db's per-table table (table, strategy, already, copied, ...).
	regexp.MustCompile(`^\w+ {2,}[a-z][a-z-]* {2,}\d+ {2,}\d+ `),
}

// A repeat is a command a journey runs as many times as its timing allows
// (rehearsals while a load runs): a run of its blocks (the command and what
// it printed) that are the same once masked is written once, followed by
// a line that says so, whether it ran once or more.
type repeat struct {
	what string
	cmd  *regexp.Regexp
	only *regexp.Regexp
}

var repeats = []repeat{
	{"the rehearsals run one after another while hsload writes", regexp.MustCompile(`^\$ update_database rehearse -c \S+(?: --verify-copy)?\n`), whileServing},
}

// repeatNote follows the block of a collapsed repeat.
const repeatNote = "(the same, as many times as the timing allowed)\n\n"

// normalize masks the volatile parts of the transcript of the test named
// test, collapses its repeats and orders its unordered blocks.
func normalize(test, transcript string) string {
	for _, m := range masks {
		if m.only != nil && !m.only.MatchString(test) {
			continue
		}
		if !m.numbered {
			transcript = m.re.ReplaceAllString(transcript, m.repl)
			continue
		}
		seen := map[string]int{}
		transcript = m.re.ReplaceAllStringFunc(transcript, func(v string) string {
			if _, ok := seen[v]; !ok {
				seen[v] = len(seen) + 1
			}
			return fmt.Sprintf(m.repl, seen[v])
		})
	}
	for _, r := range repeats {
		if r.only == nil || r.only.MatchString(test) {
			transcript = collapse(transcript, r.cmd)
		}
	}
	lines := strings.SplitAfter(transcript, "\n")
	for _, re := range unordered {
		for i := 0; i < len(lines); {
			j := i
			for j < len(lines) && re.MatchString(strings.TrimSuffix(lines[j], "\n")) {
				j++
			}
			if j > i+1 {
				sort.Strings(lines[i:j])
			}
			i = max(j, i+1)
		}
	}
	return strings.Join(lines, "")
}

// collapse writes each run of equal blocks of the command cmd once,
// followed by repeatNote. A block is a line starting with "$ " and the lines
// up to the next such line.
func collapse(transcript string, cmd *regexp.Regexp) string {
	var blocks []string
	for _, line := range strings.SplitAfter(transcript, "\n") {
		if strings.HasPrefix(line, "$ ") || len(blocks) == 0 {
			blocks = append(blocks, line)
		} else {
			blocks[len(blocks)-1] += line
		}
	}
	var b strings.Builder
	for i := 0; i < len(blocks); {
		j := i + 1
		if cmd.MatchString(blocks[i]) {
			for j < len(blocks) && blocks[j] == blocks[i] {
				j++
			}
			b.WriteString(blocks[i])
			b.WriteString(repeatNote)
		} else {
			b.WriteString(blocks[i])
		}
		i = j
	}
	return b.String()
}

// goldenPath is the golden file of the test t.
func goldenPath(t *testing.T) string {
	return filepath.Join("testdata", strings.ReplaceAll(t.Name(), "/", "-")+".golden")
}

// updateCommand is the command that regenerates t's golden file.
func updateCommand(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return fmt.Sprintf("go test ./journey -run '%s' -update", strings.Join(parts, "/"))
}

// maxDiffLines bounds the diff shown when a golden file differs.
const maxDiffLines = 20

// checkGolden compares the transcript with t's golden file, or with -update
// writes it.
func checkGolden(t *testing.T, transcript string) {
	t.Helper()
	if !goldenJourneys.MatchString(t.Name()) {
		return
	}
	path := goldenPath(t)
	got := []byte(normalize(t.Name(), transcript))
	if scripttest.Update() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Errorf("journey/%s is missing; write it: %s", path, updateCommand(t.Name()))
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if msg := goldenDiff("journey/"+path, want, got, updateCommand(t.Name())); msg != "" {
		t.Error(msg)
	}
}

// goldenDiff is empty when got is want, or else says so in a few lines: the
// start of a unified diff and the command that regenerates the golden file.
func goldenDiff(path string, want, got []byte, fix string) string {
	if bytes.Equal(got, want) {
		return ""
	}
	d := strings.Split(strings.TrimSuffix(string(diff.Diff(path, want, "output", got)), "\n"), "\n")
	if len(d) > maxDiffLines {
		d = append(d[:maxDiffLines], fmt.Sprintf("... (%d more diff lines)", len(d)-maxDiffLines))
	}
	return fmt.Sprintf("the journey's output differs from %s; if the change is intended: %s\n%s", path, fix, strings.Join(d, "\n"))
}
