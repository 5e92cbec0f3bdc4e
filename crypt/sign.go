package crypt

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// SigningKey is an Ed25519 private key that signs manifests and audit records.
type SigningKey struct{ priv ed25519.PrivateKey }

// PublicKey is the hex-free, prefixed text form of an Ed25519 public key as
// stored in the repository config: "ed25519:<base64>".
type PublicKey string

// GenerateSigningKey returns a new random signing key.
func GenerateSigningKey() SigningKey {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic("crypt: no randomness: " + err.Error())
	}
	return SigningKey{priv}
}

// Public returns the key's public half.
func (k SigningKey) Public() PublicKey {
	return PublicKey("ed25519:" + base64.StdEncoding.EncodeToString(k.priv.Public().(ed25519.PublicKey)))
}

// Sign signs msg.
func (k SigningKey) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

func (k SigningKey) text() string {
	return "VAULTBAK-ED25519-SECRET-KEY-" + base64.RawURLEncoding.EncodeToString(k.priv.Seed())
}

func parseSigningKey(s string) (SigningKey, error) {
	const prefix = "VAULTBAK-ED25519-SECRET-KEY-"
	if !strings.HasPrefix(s, prefix) {
		return SigningKey{}, fmt.Errorf("crypt: not a vaultbak signing key")
	}
	seed, err := base64.RawURLEncoding.DecodeString(s[len(prefix):])
	if err != nil || len(seed) != ed25519.SeedSize {
		return SigningKey{}, fmt.Errorf("crypt: malformed signing key")
	}
	return SigningKey{ed25519.NewKeyFromSeed(seed)}, nil
}

// Verify reports whether sig is pub's valid signature of msg.
func (pub PublicKey) Verify(msg, sig []byte) error {
	raw, ok := strings.CutPrefix(string(pub), "ed25519:")
	if !ok {
		return fmt.Errorf("crypt: unknown public key type in %q", truncate(string(pub)))
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("crypt: malformed public key %q", truncate(string(pub)))
	}
	if !ed25519.Verify(ed25519.PublicKey(key), msg, sig) {
		return fmt.Errorf("crypt: bad signature")
	}
	return nil
}

// Seed returns the key's 32-byte private seed, for sealing it.
func (k SigningKey) Seed() []byte { return k.priv.Seed() }

// SigningKeyFromSeed rebuilds a key from its seed.
func SigningKeyFromSeed(seed []byte) (SigningKey, error) {
	if len(seed) != ed25519.SeedSize {
		return SigningKey{}, fmt.Errorf("crypt: malformed signing key seed")
	}
	return SigningKey{ed25519.NewKeyFromSeed(seed)}, nil
}
