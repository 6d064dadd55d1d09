package poolsettest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowestPort is the lowest port FreePort hands out.
const lowestPort = 20000

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago, for
// a server that the tests start and may stop and start again on the same
// port. It picks below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), so that while such a server is down no
// outgoing connection of another process can take its port as a source
// port. When that range leaves no room it lets the kernel choose.
func FreePort() (int, error) {
	if lo := ephemeralLow(); lo-lowestPort >= 1000 {
		for range 100 {
			port := lowestPort + rand.IntN(lo-lowestPort)
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				continue
			}
			l.Close()
			return port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow returns the first port of the kernel's ephemeral range,
// 32768 when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return lo
}
