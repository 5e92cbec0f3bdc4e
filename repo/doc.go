// Package repo is the vaultbak repository: the on-disk format and the commit
// order, identical in every region.
//
// Layout of a region (every name below is part of the format):
//
//	config          Config as JSON, MACed with a key only key holders have
//	keys/<hash>     the repository secrets, age-sealed to recovery + writers
//	data/XX/<hash>  packs: blobs (zstd-compressed chunks and trees) followed by
//	                a trailer listing them, age-sealed to the recovery
//	                recipients as one file; <hash> = SHA-256 of the stored bytes
//	index/<hash>    index files (blob ID → pack, offset, length), sealed to
//	                recovery + writers; <hash> = SHA-256 of the stored bytes
//	snapshots/<id>  signed manifests; <id> = SHA-256 of the signed payload
//
// What each role opens: chunk data, trees and snapshot bodies need a recovery
// identity; the index and the secrets (needed to deduplicate) also open with
// a host's writer identity; pack hashes and manifest signatures need no key.
//
// Commit order: a backup writes packs, then the index files that describe
// them, then the manifest. A region receives a manifest only after every
// pack and index file written for it is confirmed present there (stat with
// size), so an interrupted backup leaves unreferenced packs or index entries,
// never a snapshot that cannot be restored. Index files are flushed while a
// backup runs, so the next run deduplicates against what an interrupted run
// already uploaded.
//
// A Repository is opened over several regions. Reads go to the regions in
// order and fall back, object by object, to the next region when one is
// missing or damaged. Writes go to every region.
package repo
