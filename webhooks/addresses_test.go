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
	} {
		assert.Equal(t, public, PublicAddress(netip.MustParseAddr(a)), a)
	}
	assert.ErrorIs(t, CheckHost(context.Background(), "169.254.169.254"), ErrPrivateAddress)
	assert.ErrorIs(t, CheckHost(context.Background(), "localhost"), ErrPrivateAddress, "a name that resolves to loopback")
	assert.NoError(t, CheckHost(context.Background(), "93.184.216.34"))
	assert.ErrorIs(t, publicOnly("tcp", "127.0.0.1:8080", nil), ErrPrivateAddress, "a connection to loopback")
	assert.NoError(t, publicOnly("tcp", "93.184.216.34:443", nil))
}
