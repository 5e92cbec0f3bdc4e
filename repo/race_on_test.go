//go:build race

package repo

// raceEnabled: the race detector multiplies time and memory (TestIndexMemory
// measures a smaller index under it).
const raceEnabled = true
