package server

import (
	"net"
	"os"
)

// SDNotify sends a state to systemd when NOTIFY_SOCKET is set (Type=notify
// units): READY=1 once listening, STOPPING=1 on shutdown, and
// EXTEND_TIMEOUT_USEC while a long schema upgrade runs so that systemd does
// not kill the process mid-migration.
func SDNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}
