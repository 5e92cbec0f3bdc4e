// Package backendtest is the conformance suite for backend.Backend: one set
// of tests that every implementation (local directory, memory, S3) and every
// wrapper passes, so that the contract written in the Backend doc comment is
// checked rather than hoped for.
//
// Call Run from a test in the implementation's package:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backend.Backend {
//			b, err := local.New(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return b
//		})
//	}
package backendtest
