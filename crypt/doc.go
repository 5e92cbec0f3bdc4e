// Package crypt holds every cryptographic primitive vaultbak uses and nothing
// else: keyed hashes, age sealing, Ed25519 signatures and the key files that
// carry identities.
//
//   - Keyed hashes ([Key.Sum], [Key.New]) are BLAKE3 in keyed mode. Chunk IDs,
//     tree IDs and whole-file content hashes are keyed, so a storage operator
//     cannot confirm that a known file is in the backup.
//   - Sealing ([Seal], [Open], [OpenAt]) is age: one header per object, a
//     payload in 64 KiB authenticated chunks that can be read at any offset.
//     [FileKey] unwraps a header once so that later reads of the same object
//     skip the (post-quantum) key decapsulation.
//   - Identities ([GenerateIdentity], [ParseIdentities], [ParseRecipient]) are
//     age identities: hybrid post-quantum by default, X25519 on request. age
//     refuses to mix the two kinds in one header, so every recipient of a
//     repository must be of one kind ([RecipientKind]).
//   - A host credential ([HostCredential]) is a writer identity plus an
//     Ed25519 signing key, stored together in one 0600 file.
//
// crypt imports no other package of the project.
package crypt
