package webhooks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// Deliveries go to the endpoints tenants register, so an endpoint on an address inside the
// operator's network would make allot a way into it (the cloud metadata service at
// 169.254.169.254, an admin port on loopback) and the deliveries log a port scanner. Unless the
// operator allows private addresses (a test rig, or endpoints on a private network on purpose),
// both registration and every connection refuse them; the connection check holds when a
// name resolves differently later (DNS rebinding).

// PublicAddress reports whether ip is one deliveries may reach: not loopback, private (RFC
// 1918, unique local), link-local, shared (RFC 6598), unspecified, multicast, broadcast, or
// another special-purpose IPv4 block (IETF protocol assignments, benchmarking, reserved) — nor
// an IPv6 address that carries an IPv4 one a gateway may translate to (NAT64, 6to4,
// IPv4-compatible), judged by the IPv4 address it carries: 64:ff9b::a9fe:a9fe reaches
// 169.254.169.254 on a host with NAT64.
func PublicAddress(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	if ip.Is6() {
		if localNAT64.Contains(ip) {
			return false // translated inside the operator's network, to anything
		}
		if v4, ok := embeddedIPv4(ip); ok {
			return PublicAddress(v4)
		}
		return true
	}
	b := ip.As4()
	switch {
	case b[0] == 0, // "this network"
		b[0] == 100 && b[1]&0xc0 == 64,        // shared address space (RFC 6598)
		b[0] == 192 && b[1] == 0 && b[2] == 0, // IETF protocol assignments (RFC 6890)
		b[0] == 198 && b[1]&0xfe == 18,        // benchmarking (RFC 2544)
		b[0] >= 240:                           // reserved, and broadcast
		return false
	}
	return true
}

// localNAT64 is the local-use NAT64 prefix (RFC 8215).
var localNAT64 = netip.MustParsePrefix("64:ff9b:1::/48")

// embeddedIPv4 is the IPv4 address an IPv6 one carries where a gateway may translate it: the
// well-known NAT64 prefix (64:ff9b::/96), 6to4 (2002::/16) and the deprecated IPv4-compatible
// form (::a.b.c.d).
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	b := ip.As16()
	var zero [10]byte
	switch {
	case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && [8]byte(b[4:12]) == [8]byte{}:
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case b[0] == 0x20 && b[1] == 0x02:
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case [10]byte(b[0:10]) == zero && b[10] == 0 && b[11] == 0 && !(b[12] == 0 && b[13] == 0 && b[14] == 0):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	}
	return netip.Addr{}, false
}

// ErrPrivateAddress is a delivery or registration refused for its address.
var ErrPrivateAddress = fmt.Errorf("not a public address (allowed with --webhooks-allow-private)")

// CheckHost resolves host (a name or an address literal) and reports an error wrapping
// ErrPrivateAddress when any of its addresses is not public. A name that does not resolve now
// is let through: the connection is checked again when made.
func CheckHost(ctx context.Context, host string) error {
	if ip, err := netip.ParseAddr(host); err == nil {
		if !PublicAddress(ip) {
			return fmt.Errorf("%s: %w", host, ErrPrivateAddress)
		}
		return nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if !PublicAddress(a) {
			return fmt.Errorf("%s resolves to %s: %w", host, a, ErrPrivateAddress)
		}
	}
	return nil
}

// publicOnly is a net.Dialer Control that refuses connections to addresses that are not public.
func publicOnly(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%s: %w", address, ErrPrivateAddress)
	}
	if !PublicAddress(ap.Addr()) {
		return fmt.Errorf("%s: %w", ap.Addr(), ErrPrivateAddress)
	}
	return nil
}
