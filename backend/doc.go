// Package backend defines the storage contract of one region: a flat
// namespace of immutable objects named by slash-separated paths, which the
// repository layer fills with config, keys, packs, indexes and manifests.
// It knows nothing of chunks, keys or encryption; everything it stores is
// already ciphertext.
//
// The contract lives in the doc comment of [Backend]. Around it, code is
// organised in layers that each do one thing:
//
//   - Implementations store objects and nothing more: [vaultbak/backend/local]
//     keeps them in a local directory (temp file, fsync, rename, fsync
//     directory) and [vaultbak/backend/mem] keeps them in memory for tests.
//     Implementations never retry and never log.
//   - Wrappers are Backends around a Backend and add one cross-cutting
//     behaviour each, such as retries, rate limits, metrics or, in tests,
//     scripted failures ([vaultbak/backend/faulty]).
//   - One conformance suite, [vaultbak/backend/backendtest], states the
//     contract as tests; every implementation and every wrapper that claims
//     to be a Backend runs it.
//
// [ValidName] is the single definition of an acceptable object name. Every
// implementation checks names with it, so a name read from an untrusted
// region cannot point outside the repository. [ReadAll] reads a whole
// object with a size cap, for objects whose size an attacker may control.
package backend
