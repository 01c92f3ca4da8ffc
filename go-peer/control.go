package main

import (
	"fmt"
	"io"
	"net"
)

// acceptController serves the contract over the network (docs/peer-contract.md
// §8): it listens on the control port of every IPv4 interface, takes the first
// connection, and listens no more. The runner connects when it is ready.
func acceptController(port int, stderr io.Writer) (net.Conn, error) {
	l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, err
	}
	defer l.Close()
	fmt.Fprintln(stderr, "waiting for the controller on", l.Addr())
	conn, err := l.Accept()
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(stderr, "controller connected from", conn.RemoteAddr())
	return conn, nil
}
