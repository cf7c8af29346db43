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
// 1918, unique local), link-local, shared (RFC 6598), unspecified, multicast or broadcast.
func PublicAddress(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	if ip.Is4() {
		b := ip.As4()
		switch {
		case b[0] == 0, b[0] == 100 && b[1]&0xc0 == 64, b == [4]byte{255, 255, 255, 255}:
			return false
		}
	}
	return true
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
