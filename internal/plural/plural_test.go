package plural

import "testing"

func TestCount(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{Count(0, "row"), "0 rows"},
		{Count(1, "row"), "1 row"},
		{Count(int64(2), "row"), "2 rows"},
		{Irregular(1, "entry", "entries"), "1 entry"},
		{Irregular(uint(12), "entry", "entries"), "12 entries"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
