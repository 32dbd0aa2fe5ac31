// Package netcap bounds what one client address can take from a daemon:
// Listener caps open connections per listener and per address, and
// ClientKey names the address the caps (and trustd's rate limits) count
// by.
package netcap

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// ClientKey is the client a remote address ("host:port") counts as: the
// IPv4 address, or the IPv6 /64 (one host usually holds a whole /64, and
// counting its 2^64 addresses apart would be no limit at all). Something
// that does not parse counts as itself.
func ClientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return remoteAddr
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// Limits cap a listener's open connections. Zero fields take the defaults
// in brackets.
type Limits struct {
	Total int // all clients together [4096]
	PerIP int // one client (ClientKey) [256]
}

// Default limits: far above what relying parties, vendors' servers and
// officers open, and, for trustd's three listeners together, well under a
// process's usual file-descriptor limit (ulimit -n).
const (
	DefaultTotal = 4096
	DefaultPerIP = 256
)

func (l Limits) withDefaults() Limits {
	if l.Total == 0 {
		l.Total = DefaultTotal
	}
	if l.PerIP == 0 {
		l.PerIP = DefaultPerIP
	}
	return l
}

// Validate refuses negative limits and a per-client cap above the total.
func (l Limits) Validate() error {
	if l.Total < 0 || l.PerIP < 0 {
		return errors.New("connection limits must not be negative")
	}
	if d := l.withDefaults(); d.PerIP > d.Total {
		return fmt.Errorf("the per-client connection limit %d is above the total %d", d.PerIP, d.Total)
	}
	return nil
}

// Listener hands out connections while the caps allow; one beyond them
// is closed as soon as it is accepted, before a byte is read, so that
// idle connections from one client (or many) cannot use up the process's
// file descriptors and lock everyone else out. A connection counts until
// it is closed; the server's own timeouts (ReadHeaderTimeout, IdleTimeout)
// close idle ones.
type Listener struct {
	net.Listener
	limits Limits
	log    *slog.Logger
	name   string

	mu    sync.Mutex
	total int
	per   map[string]int

	refused atomic.Int64
	logRate rate.Sometimes
}

// Wrap caps ln's connections; name says which listener in the log.
func Wrap(ln net.Listener, l Limits, log *slog.Logger, name string) *Listener {
	return &Listener{Listener: ln, limits: l.withDefaults(), log: log, name: name, per: map[string]int{},
		logRate: rate.Sometimes{First: 1, Interval: 10 * time.Second}}
}

// Accept returns the next connection within the caps.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := ClientKey(c.RemoteAddr().String())
		if l.admit(key) {
			return &conn{Conn: c, release: func() { l.release(key) }}, nil
		}
		c.Close()
		l.refused.Add(1)
		// At most one line every 10 s, however many are refused.
		l.logRate.Do(func() {
			l.log.Warn("connections refused: over the cap", "listener", l.name, "refused", l.refused.Swap(0), "last_client", key,
				"max_connections", l.limits.Total, "max_connections_per_ip", l.limits.PerIP)
		})
	}
}

func (l *Listener) admit(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.limits.Total || l.per[key] >= l.limits.PerIP {
		return false
	}
	l.total++
	l.per[key]++
	return true
}

func (l *Listener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.per[key]--; l.per[key] == 0 {
		delete(l.per, key)
	}
}

// Open is the number of connections counted now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// conn gives its place back once, when first closed.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
