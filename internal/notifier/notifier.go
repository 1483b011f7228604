// Package notifier wakes the long-polling /sync requests of a process when
// something they may want has been committed: an event in one of their
// rooms, a receipt, a typing change, account data of their user.
//
// A waiting request listens on keys (its user and the rooms it is in);
// writers wake keys after their transaction commits. A wake-up says only
// "look again": the request then reads the database from its token, so a
// spurious wake-up costs one read and a missed one is impossible as long as
// the request listens before it reads (see Listen).
package notifier

import "sync"

// Notifier hands out listeners and wakes them.
type Notifier struct {
	mu   sync.Mutex
	keys map[string]map[*Listener]struct{}
	n    int
}

// New returns an empty notifier.
func New() *Notifier { return &Notifier{keys: map[string]map[*Listener]struct{}{}} }

// Listener is one waiting request. C receives (at most one pending value)
// when any of its keys is woken.
type Listener struct {
	C    chan struct{}
	n    *Notifier
	keys []string
}

// UserKey and RoomKey name the keys a request listens on.
func UserKey(user string) string { return "u" + user }

// RoomKey is the key of a room.
func RoomKey(room string) string { return "r" + room }

// Listen registers a listener on keys. Listen before reading what the
// request will wait on: a write committed after the read then always wakes
// it. Keys added later (Add) only see what commits after they are added:
// the caller reads again when the streams moved meanwhile.
func (n *Notifier) Listen(keys ...string) *Listener {
	l := &Listener{C: make(chan struct{}, 1), n: n}
	n.mu.Lock()
	n.n++
	n.mu.Unlock()
	l.Add(keys...)
	return l
}

// Add listens on more keys.
func (l *Listener) Add(keys ...string) {
	n := l.n
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range keys {
		set := n.keys[k]
		if set == nil {
			set = map[*Listener]struct{}{}
			n.keys[k] = set
		}
		if _, ok := set[l]; !ok {
			set[l] = struct{}{}
			l.keys = append(l.keys, k)
		}
	}
}

// Close unregisters the listener.
func (l *Listener) Close() {
	n := l.n
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range l.keys {
		if set := n.keys[k]; set != nil {
			delete(set, l)
			if len(set) == 0 {
				delete(n.keys, k)
			}
		}
	}
	n.n--
}

// Wake wakes every listener on any of keys.
func (n *Notifier) Wake(keys ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range keys {
		for l := range n.keys[k] {
			select {
			case l.C <- struct{}{}:
			default:
			}
		}
	}
}

// Listening is the number of open listeners.
func (n *Notifier) Listening() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.n
}
