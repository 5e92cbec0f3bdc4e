// Package mem implements an in-memory backend.Backend for tests.
//
// A Mem copies data on the way in and on the way out, so neither a caller
// nor a test can change a stored object by accident. Raw and SetRaw bypass
// the Backend API to read and tamper with stored bytes, as a hostile storage
// operator would.
package mem
