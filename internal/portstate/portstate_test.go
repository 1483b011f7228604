package portstate

import (
	"errors"
	"testing"

	"hsops/internal/fault"
)

func TestInProgressError_NamesTheCommand(t *testing.T) {
	for _, c := range []struct{ source, want string }{
		{"/srv/matrix/homeserver.db", "nothing was changed: finish the port first:\n  port_db --sqlite-database /srv/matrix/homeserver.db --postgres-config <config>"},
		{"/srv/my snapshot's.db", "nothing was changed: finish the port first:\n  port_db --sqlite-database '/srv/my snapshot'\\''s.db' --postgres-config <config>"},
		{"", ErrInProgress.Hint()},
	} {
		err := error(&InProgressError{Status: Status{Ours: true, Deferred: 3, Source: c.source}})
		if got := fault.HintOf(err); got != c.want {
			t.Errorf("source %q: hint\n%s\nwant\n%s", c.source, got, c.want)
		}
		if !errors.Is(err, ErrInProgress) || fault.ClassOf(err) != fault.NotOurs {
			t.Errorf("source %q: not ErrInProgress's class: %v", c.source, fault.ClassOf(err))
		}
		if want := "a port is in progress: run port_db again: 3 indexes and constraints dropped for the copy are not rebuilt yet, and the port did not finish"; err.Error() != want {
			t.Errorf("message %q", err.Error())
		}
	}
}
