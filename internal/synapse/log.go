package synapse

import (
	"regexp"
	"strings"
)

// Synapse's log messages this package reacts to (spec sections 3.4, 4.3,
// 4.4). They are matched anywhere in a line, so that a log format other
// than the script's default ("%(asctime)s - %(name)s - %(lineno)d -
// %(levelname)s - %(message)s") is understood too.
var (
	reApplying     = regexp.MustCompile(`Applying (?:engine-specific )?schema (\d+/\S+)`)
	reRunningPy    = regexp.MustCompile(`Running (\d+/\S+\.py):run_(?:create|upgrade)`)
	reSchemaDone   = regexp.MustCompile(`Schema now up to date`)
	reBgStart      = regexp.MustCompile(`Starting background schema updates for database (\S+)`)
	reBatchStart   = regexp.MustCompile(`Starting update batch on background update '([^']+)'`)
	reBatchDone    = regexp.MustCompile(`Running background update '?([^'.\s]+)'?\. Processed (\d+) items in (\d+)ms`)
	reUpdateError  = regexp.MustCompile(`Error doing update(?::\s*(.*))?$`)
	reAbort        = regexp.MustCompile(`5 back-to-back background update failures; aborting`)
	reNoMore       = regexp.MustCompile(`No more background updates to do`)
	reRecordPrefix = regexp.MustCompile(`^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+ - `)
	reExceptionHdr = regexp.MustCompile(`^([A-Za-z_][\w.]*(?:Error|Exception|Violation|Warning|Exit|Interrupt|Failure)|[A-Za-z_][\w.]*\.[A-Z]\w*|KeyError|ValueError|RuntimeError|AssertionError|Exception)(?::\s|$)`)
)

// isRecord reports whether a line starts a log record (rather than
// continuing one, as traceback lines do).
func isRecord(line string) bool { return reRecordPrefix.MatchString(line) }

// exceptionOf returns the exception a traceback ends with, from the lines
// that follow a "Traceback (most recent call last):" line: the first
// unindented line after the frames and the lines continuing it (psycopg2's
// DETAIL), up to the next log record. "" when there is none.
func exceptionOf(lines []string) string {
	start := -1
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "Traceback (most recent call last)") {
			start = i
			break
		}
	}
	if start < 0 {
		return ""
	}
	var out []string
	for _, l := range lines[start+1:] {
		switch {
		case isRecord(l):
			return strings.Join(out, " ")
		case len(out) == 0 && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")):
			continue // a frame
		case len(out) == 0 && !reExceptionHdr.MatchString(l):
			continue
		case strings.TrimSpace(l) == "":
			if len(out) > 0 {
				return strings.Join(out, " ")
			}
		case strings.HasPrefix(l, "During handling of the above exception"), strings.HasPrefix(l, "The above exception was the direct cause"):
			return strings.Join(out, " ")
		default:
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, " ")
}
