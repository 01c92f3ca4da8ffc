package main

import (
	"crypto/ed25519"
	"encoding/binary"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// identityFromSeed derives the peer key every meshgate implementation derives
// from the same seed: the Ed25519 secret seed is the 8 little-endian bytes of
// seed followed by 24 zero bytes, so reruns keep their peer ids.
func identityFromSeed(seed uint64) (crypto.PrivKey, error) {
	var secret [ed25519.SeedSize]byte
	binary.LittleEndian.PutUint64(secret[:8], seed)
	return crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(secret[:]))
}
