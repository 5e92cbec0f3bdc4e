// Package local implements a backend.Backend on a local directory, for
// regions on a mounted disk and for tests.
//
// Object "a/b/c" is the file dir/a/b/c. Put writes a temporary file named
// ".tmp-<digits>" next to the target, fsyncs it, renames it over the target
// and fsyncs the directory, so after a crash a reader sees either the old
// object, the new one, or nothing, and a stray temporary file at worst. Stage
// writes a pack as it fills to such a file at the top of the directory and
// renames it on Commit. List skips temporary files. Files are created 0600
// and directories 0700.
//
// A writer that is killed leaves its temporary files behind (a staged pack
// is up to ~16 MiB). Local is a backend.Sweeper: Strays counts them, and
// Sweep, which a repository writer calls when it starts, removes those
// unchanged for a day. A staged object's file is touched every hour while
// it is open, so no live writer's file, in this process or on another host
// sharing the directory, gets that old.
package local
