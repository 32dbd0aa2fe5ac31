// Package netcap bounds what one client address can take from a daemon:
// Listener caps open connections per listener and per address, and
// ClientKey names the address the caps (and trustd's rate limits) count
// by.
package netcap

import (
	"net"
	"net/netip"
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
