// Package faulty wraps a backend.Backend with scripted faults for tests: a
// call fails with a chosen error, a Put is acknowledged but dropped, or a Put
// stores corrupted bytes. Faults are matched by operation and by a substring
// of the object name (of the prefix, for List), in the order they were added;
// each fires a set number of times or forever.
//
// A fault scripted to fire a finite number of times that never fires usually
// means the test no longer exercises what it claims to, so VerifyAllFired
// fails the test in that case.
package faulty
