// Package plural writes counts in the tools' messages: "1 row", "3 rows".
package plural

import "fmt"

// Integer is any integer type a count comes in.
type Integer interface {
	~int | ~int32 | ~int64 | ~uint | ~uint32 | ~uint64
}

// Count says n of something, in the singular for one ("1 extra row") and
// with an s added for any other number ("0 rows", "3 rows").
func Count[N Integer](n N, word string) string {
	return Irregular(n, word, word+"s")
}

// Irregular is Count for a word whose plural is not made with an s
// ("1 entry", "2 entries").
func Irregular[N Integer](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
