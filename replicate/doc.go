// Package replicate compares the regions of a repository and heals the
// ones that lag or hold damaged copies, by copying ciphertext from a region
// whose copy verifies. It needs no key: every object it reads to decide or
// to copy is verified by repo.VerifyStored or repo.VerifyObject (hash for
// packs, index and key files; hash and signature for manifests and audit
// records), so a damaged copy in one region never spreads to another.
//
// Inspect compares listings (names and sizes). Listing cannot tell which of
// two copies of different sizes is the damaged one, so those copies are
// read and verified, every one; with Options.Verify every copy of every
// object is, which also finds damage that keeps the size. Healing states,
// per object and region: missing (another region holds it), damaged (its
// copy fails verification and another region's verifies: Sync replaces
// it), or lost (no region holds a copy that verifies: reported, left as it
// is). A copy that verifies is never overwritten.
//
// Copies follow the commit order — key files, packs, index files, then
// manifests, the config last — so a region healed halfway never shows a
// snapshot whose data it lacks.
package replicate
