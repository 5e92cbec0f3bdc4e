package local

import "time"

// SetTouchStaged sets how often open staged objects refresh their file's
// modification time, until the test ends.
func SetTouchStaged(cleanup func(func()), d time.Duration) {
	old := touchStaged
	touchStaged = d
	cleanup(func() { touchStaged = old })
}
