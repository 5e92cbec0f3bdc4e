// Package chunk splits file contents into content-defined chunks, the unit
// of deduplication.
//
// Boundaries are chosen by FastCDC (normalised chunking, as implemented by
// go-cdc-chunkers under the name "fastcdc-v1.0.0"): a Gear rolling hash is
// computed over the bytes after the minimum size, and a chunk ends where the
// hash matches a mask, a stricter mask before the average size and a looser
// one after it, so sizes cluster around [Params.Avg]. Because a boundary
// depends only on the bytes just before it, inserting or deleting bytes
// changes the chunks around the edit and no others.
//
// # Why the key
//
// With a public Gear table anyone can recompute where a known file would be
// cut, and the sequence of chunk sizes (visible to a storage operator as
// object and pack sizes, even when everything is encrypted) would confirm
// that the file is in the backup. The chunker therefore uses a Gear table
// derived from a secret 32-byte repository key (keyed BLAKE3 over the
// standard table), so boundaries depend on the key and are not a fingerprint
// of the content. The key is one of the repository secrets; it is distinct
// from the key of chunk IDs.
//
// # Parameters are part of the format
//
// [Params] (algorithm, Min, Avg, Max) and the key are fixed when a repository
// is created and stored in its config. Any change moves every boundary, so
// new backups would no longer deduplicate against old ones. The golden file
// testdata/golden-boundaries.json freezes the boundaries of seeded streams;
// a change that breaks it is a repository format change.
//
// # Buffer ownership
//
// A [Chunker] reads through one scan buffer of at least Params.Max bytes,
// given to [New] or allocated by it, and reused across streams by
// [Chunker.Reset]. The slice returned by [Chunker.Next] aliases that buffer
// and is valid only until the next call to Next or Reset: a caller that
// keeps a chunk (to compress it later, or to hand it to another goroutine)
// copies it first. Memory is therefore one buffer per chunker, and a pipeline
// with N chunking workers needs N buffers.
//
// chunk imports no other package of the project.
package chunk
