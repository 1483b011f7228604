package notifier

import "testing"

func TestNotifier_WakesOnlyItsKeys(t *testing.T) {
	n := New()
	a := n.Listen(UserKey("@a:x"), RoomKey("!r:x"))
	b := n.Listen(UserKey("@b:x"))
	n.Wake(RoomKey("!r:x"))
	n.Wake(RoomKey("!r:x")) // a second wake-up while one is pending does not block
	select {
	case <-a.C:
	default:
		t.Fatal("a was not woken by its room")
	}
	select {
	case <-b.C:
		t.Fatal("b was woken by a room it does not listen on")
	default:
	}
	if got := n.Listening(); got != 2 {
		t.Errorf("listening %d, want 2", got)
	}
	b.Add(RoomKey("!r:x"), UserKey("@b:x"))
	n.Wake(RoomKey("!r:x"))
	select {
	case <-b.C:
	default:
		t.Fatal("b was not woken by the room it added")
	}
	a.Close()
	b.Close()
	if got := n.Listening(); got != 0 || len(n.keys) != 0 {
		t.Errorf("after close: %d listening, %d keys", got, len(n.keys))
	}
	n.Wake(UserKey("@b:x")) // nobody listens: nothing happens
}
