// A wrapper around the go peer (/peer in the same image), for the tests of `meshgate probe`. It behaves like the
// go peer, which it execs, except:
//
//	--hello    it first writes one line that is not a contract event (`hello`) on its event stream (the file
//	           `events_path` names when the configuration has one, else stdout), before the go peer writes
//	           `started` there: a contract violation that the probe must name, and that must keep a run from
//	           using the image;
//	--require  it refuses a configuration whose `require` lists a feature the go peer lacks (contract::config's
//	           `require`: `unsupported`, exit status 3) before the go peer sees it, so that an image exists that
//	           passes every step of the probe whether or not the go peer of the tree knows `require` yet.
package main

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"syscall"
	"time"
)

// What the go peer can do (its `started.features`).
var features = map[string]bool{
	"drop-protocol": true, "muxer-yamux": true, "open-streams": true, "security-noise": true,
	"security-tls": true, "transport-quic-v1": true, "transport-tcp": true,
}

func main() {
	for _, arg := range os.Args[1:] {
		switch arg {
		case "--hello":
			hello()
		case "--require":
			refuse()
		default:
			fmt.Fprintf(os.Stderr, "chatty-peer: unknown argument %q\n", arg)
			os.Exit(2)
		}
	}
	err := syscall.Exec("/peer", []string{"/peer"}, os.Environ())
	fmt.Fprintf(os.Stderr, "chatty-peer: cannot exec /peer: %v\n", err)
	os.Exit(1)
}

// hello writes `hello` where the go peer will write its events, so that it is the first line of that stream.
func hello() {
	var config struct {
		EventsPath string `json:"events_path"`
	}
	_ = json.Unmarshal([]byte(os.Getenv("MESHGATE_PEER_CONFIG")), &config)
	if config.EventsPath == "" {
		fmt.Println("hello")
		return
	}
	// Opened as the go peer opens it: the file is the runner's, never created here.
	f, err := os.OpenFile(config.EventsPath, os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chatty-peer: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintln(f, "hello")
	f.Close()
}

// refuse exits 3 with `unsupported` when the configuration requires a feature the go peer lacks.
func refuse() {
	var config struct {
		Seed    uint64   `json:"seed"`
		Require []string `json:"require"`
	}
	if err := json.Unmarshal([]byte(os.Getenv("MESHGATE_PEER_CONFIG")), &config); err != nil {
		return // the go peer says what is wrong with it
	}
	for _, f := range config.Require {
		if features[f] {
			continue
		}
		event, _ := json.Marshal(map[string]any{
			"ts": time.Now().UnixMicro(), "peer": peerID(config.Seed), "event": "unsupported",
			"feature": f, "reason": "the go peer does not have " + f, "cmd_id": nil,
		})
		os.Stdout.Write(append(event, '\n'))
		os.Exit(3)
	}
}

// peerID is the contract's identity of a seed: the Ed25519 key whose secret seed is the seed's 8 bytes
// little-endian and 24 zero bytes, as an identity multihash of its protobuf public key, in base58btc.
func peerID(seed uint64) string {
	secret := make([]byte, ed25519.SeedSize)
	binary.LittleEndian.PutUint64(secret, seed)
	public := ed25519.NewKeyFromSeed(secret).Public().(ed25519.PublicKey)
	key := append([]byte{0x08, 0x01, 0x12, byte(len(public))}, public...) // KeyType Ed25519, Data
	return base58(append([]byte{0x00, byte(len(key))}, key...))           // identity multihash
}

func base58(b []byte) string {
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	n := new(big.Int).SetBytes(b)
	radix, mod := big.NewInt(58), new(big.Int)
	var out []byte
	for n.Sign() > 0 {
		n.DivMod(n, radix, mod)
		out = append([]byte{alphabet[mod.Int64()]}, out...)
	}
	for _, c := range b {
		if c != 0 {
			break
		}
		out = append([]byte{'1'}, out...)
	}
	return string(out)
}
