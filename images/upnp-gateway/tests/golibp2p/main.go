// Command golibp2p is a go-libp2p host with NAT port mapping and nothing else: run beside the gateway emulator,
// it shows whether a go-libp2p release finds the gateway and maps its port (the gateway's soap_action lines say).
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/libp2p/go-libp2p"
)

func main() {
	h, err := libp2p.New(libp2p.NATPortMap(), libp2p.ListenAddrStrings("/ip4/0.0.0.0/tcp/4001"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer h.Close()
	// go-libp2p gives NAT discovery 10 s; the serial search needs about 4 of them.
	time.Sleep(15 * time.Second)
	fmt.Println(h.Addrs())
}
