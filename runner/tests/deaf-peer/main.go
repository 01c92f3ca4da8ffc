// A peer that announces itself as the contract asks and then never reads its stdin nor exits: the runner's writes
// to it must be bounded, and the case with them.
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	const id = "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X" // seed 1's peer id
	now := time.Now().UnixMicro()
	fmt.Printf(`{"ts":%d,"peer":"%s","event":"started","implementation":"deaf","versions":{},"features":[]}`+"\n", now, id)
	fmt.Printf(`{"ts":%d,"peer":"%s","event":"listening","addrs":["/ip4/0.0.0.0/tcp/4001"]}`+"\n", now, id)
	os.Stdout.Sync()
	for {
		time.Sleep(time.Hour)
	}
}
