package netcap

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClientKey(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:443":              "192.0.2.7",
		"[::ffff:192.0.2.7]:443":     "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2::9%eth0]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:3:3:4:5:6]:443": "2001:db8:1:3::/64",
		"@":                          "@",
		"not an address":             "not an address",
	} {
		if got := ClientKey(addr); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", addr, got, want)
		}
	}
}

// dialFrom opens a TCP connection from a loopback address of its own.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedAtOnce says whether the server closed c without waiting for a
// byte: a read ends at once, with EOF or a reset, rather than timing out.
func closedAtOnce(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestListenerCaps(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	ln := Wrap(tcp, Limits{Total: 3, PerIP: 2}, slog.New(slog.NewTextHandler(&logs, nil)), "test")
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	addr := tcp.Addr().String()
	next := func(who string) net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: not accepted", who)
		}
		return nil
	}
	// Two from one address are served; the third from it is closed at once.
	dialFrom(t, "127.0.0.1", addr)
	dialFrom(t, "127.0.0.1", addr)
	server1 := next("127.0.0.1 #1")
	next("127.0.0.1 #2")
	if !closedAtOnce(t, dialFrom(t, "127.0.0.1", addr)) {
		t.Fatal("a third connection from 127.0.0.1 was not closed at once")
	}
	// Another address is still served, up to the total.
	dialFrom(t, "127.0.0.2", addr)
	next("127.0.0.2")
	if !closedAtOnce(t, dialFrom(t, "127.0.0.3", addr)) {
		t.Fatal("a fourth connection, from a third address, was not closed at once")
	}
	if ln.Open() != 3 {
		t.Fatalf("%d connections counted, want 3", ln.Open())
	}
	// A closed connection gives its place back (once, however often it
	// is closed).
	server1.Close()
	server1.Close()
	dialFrom(t, "127.0.0.3", addr)
	next("127.0.0.3 after a close")
	if !closedAtOnce(t, dialFrom(t, "127.0.0.4", addr)) || ln.Open() != 3 {
		t.Fatalf("after one close and one new connection: %d counted", ln.Open())
	}
	if n := strings.Count(logs.String(), "connections refused"); n != 1 {
		t.Fatalf("%d log lines for 3 refusals within 10 s; want 1:\n%s", n, logs.String())
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		l  Limits
		ok bool
	}{
		{Limits{}, true},
		{Limits{Total: 10, PerIP: 10}, true},
		{Limits{PerIP: 5000}, false},
		{Limits{Total: 100}, false},
		{Limits{Total: -1}, false},
	} {
		if err := tc.l.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.l, err)
		}
	}
}
