package main

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The peer ids every implementation must derive (shared with the Rust peer).
func TestSeedPeerIDs(t *testing.T) {
	for seed, want := range map[uint64]string{
		0: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
		1: "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X",
	} {
		priv, err := identityFromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		if id.String() != want {
			t.Errorf("seed %d: peer id %s, want %s", seed, id, want)
		}
	}
}

// The seed bytes are little-endian followed by zeros.
func TestSeedByteOrder(t *testing.T) {
	priv, err := identityFromSeed(0x0807060504030201)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := priv.Raw()
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, ed25519.SeedSize)
	copy(secret, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if want := ed25519.NewKeyFromSeed(secret); !bytes.Equal(raw, want) {
		t.Fatal("key does not come from the little-endian seed padded with zeros")
	}
}
