package poolsettest

import "testing"

// TestFreePortOutsideEphemeralRange: the ports of servers the tests start
// and restart are ones no outgoing connection can take meanwhile.
func TestFreePortOutsideEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	if lo-lowestPort < 1000 {
		t.Skipf("ephemeral range starts at %d: no room below it", lo)
	}
	for range 20 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if port < lowestPort || port >= lo {
			t.Fatalf("FreePort = %d; want in [%d, %d)", port, lowestPort, lo)
		}
	}
}
