// Package local implements a backend.Backend on a local directory, for
// regions on a mounted disk and for tests.
//
// Object "a/b/c" is the file dir/a/b/c. Put writes a temporary file named
// ".tmp-…" next to the target, fsyncs it, renames it over the target and
// fsyncs the directory, so after a crash a reader sees either the old object,
// the new one, or nothing, and a stray ".tmp-" file at worst. List skips such
// files. Files are created 0600 and directories 0700.
package local
