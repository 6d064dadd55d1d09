package natsqueue

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Embedded is a NATS server with JetStream running in this process, for
// tests and the demo. It listens on 127.0.0.1 on a port of its own, stores
// under the directory given to StartEmbedded and logs nothing. Its methods
// are safe for concurrent use.
type Embedded struct {
	s    *server.Server
	once sync.Once
}

// StartEmbedded starts an in-process server with JetStream storing under
// dir, and blocks until it accepts connections (at most 10s).
func StartEmbedded(dir string) (*Embedded, error) {
	if dir == "" {
		return nil, errors.New("nats: embedded server: no store directory")
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "poolset-embedded",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   dir,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("nats: embedded server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, errors.New("nats: embedded server: not ready for connections after 10s")
	}
	return &Embedded{s: s}, nil
}

// URL returns the server's client URL, nats://127.0.0.1:<port>.
func (e *Embedded) URL() string { return e.s.ClientURL() }

// Shutdown stops the server and blocks until it has stopped. Connections
// to it reconnect in vain until they are closed, so close Brokers first.
// Shutdown is idempotent.
func (e *Embedded) Shutdown() {
	e.once.Do(func() {
		e.s.Shutdown()
		e.s.WaitForShutdown()
	})
}
