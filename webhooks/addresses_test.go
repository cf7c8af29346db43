package webhooks

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Deliveries reach public addresses only, unless the operator allows private ones.
func TestPublicAddress(t *testing.T) {
	for a, public := range map[string]bool{
		"127.0.0.1": false, "::1": false, "10.0.0.5": false, "172.16.3.4": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fc00::1": false, "0.0.0.0": false, "::": false,
		"100.64.0.1": false, "224.0.0.1": false, "255.255.255.255": false, "::ffff:127.0.0.1": false,
		"93.184.216.34": true, "2606:4700::1111": true, "8.8.8.8": true,
		// IPv6 that carries an IPv4 address a gateway translates to: judged by that address.
		"64:ff9b::a9fe:a9fe": false, "64:ff9b::7f00:1": false, "64:ff9b::5db8:d822": true,
		"64:ff9b:1::a00:1": false, "2002:a9fe:a9fe::1": false, "2002:5db8:d822::1": true, "::127.0.0.1": false,
		// Special-purpose IPv4 blocks.
		"198.18.0.1": false, "198.19.255.1": false, "240.0.0.1": false, "192.0.0.170": false, "198.20.0.1": true,
	} {
		assert.Equal(t, public, PublicAddress(netip.MustParseAddr(a)), a)
	}
	assert.ErrorIs(t, CheckHost(context.Background(), "169.254.169.254"), ErrPrivateAddress)
	assert.ErrorIs(t, CheckHost(context.Background(), "localhost"), ErrPrivateAddress, "a name that resolves to loopback")
	assert.NoError(t, CheckHost(context.Background(), "93.184.216.34"))
	assert.ErrorIs(t, publicOnly("tcp", "127.0.0.1:8080", nil), ErrPrivateAddress, "a connection to loopback")
	assert.NoError(t, publicOnly("tcp", "93.184.216.34:443", nil))
}
