// Package drill runs a disaster-recovery drill: it proves, region by
// region, that the newest snapshot of every host and backup set can be
// restored from that region alone, and measures how old it is (RPO) and how
// long restoring it would take (RTO).
//
// Run opens the repository once per region, with that region's backend
// only (the caller's Open does it), so that nothing another region holds
// helps: the config, keys, index, manifests, trees and data are all read
// from the region under test. In each region it
//
//  1. checks the region's copy of every manifest it lists against
//     Options.Snapshots (read by the caller over all regions, which
//     verified signatures, enrolment, hash chains and that no region hides
//     a manifest that names it), and compares the region's newest snapshot
//     of every host and set with the repository's newest: an older head is
//     lag, and shows as a larger RPO;
//  2. walks the newest snapshot's trees and checks that every pack it
//     needs is present in the region with the size the index gives;
//  3. restores a sample of its files (chosen by weight of size, the same
//     for the same seed; all of them at 100%) into scratch space, every
//     chunk verified against its keyed ID and every file against its
//     keyed content hash, and removes the scratch space;
//  4. derives RPO (now minus the snapshot's time) and RTO (time to first
//     byte, plus the snapshot's size at the throughput measured in step 3).
//
// What it finds is a Report: figures per region, host and set, integrity
// Problems (damage, naming region, host, snapshot and object), and Missed
// objectives (RPO or RTO over the limit, a region that cannot serve a
// restore, a set with no snapshot). Run returns an error only when the
// drill itself could not run (scratch space unwritable, cancelled).
package drill
