// Package replicate compares the regions of a repository and heals the
// ones that lag by copying ciphertext from a region that holds it. It needs
// no key: every object it copies is verified first by repo.VerifyObject
// (hash for packs, index and key files; hash and signature for manifests),
// so a damaged copy in one region never spreads to another.
//
// Copies follow the commit order — key files, packs, index files, then
// manifests, the config last — so a region healed halfway never shows a
// snapshot whose data it lacks.
package replicate
