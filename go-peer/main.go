// Command go-peer is meshgate's go-libp2p test peer. It speaks the contract of
// docs/peer-contract.md: configuration in MESHGATE_PEER_CONFIG, JSON commands
// on stdin, JSON events on stdout, library logs on stderr.
package main

import "os"

func main() {
	os.Exit(run(os.Getenv(configEnv), os.Stdin, os.Stdout, os.Stderr))
}
