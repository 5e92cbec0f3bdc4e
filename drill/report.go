package drill

import (
	"fmt"
	"strings"
	"time"

	"vaultbak/repo"
)

// Report is what a drill found: one JSON document (the CLI's --report and
// --json output), figures per region, host and set.
type Report struct {
	Time     time.Time `json:"time"`
	Duration float64   `json:"duration_seconds"`
	Seed     string    `json:"seed"` // the sample seed: pass it again to restore the same files
	// Success: no integrity problem and every objective met.
	Success  bool           `json:"success"`
	Regions  []RegionReport `json:"regions"`
	Problems []Problem      `json:"problems"`
	Missed   []string       `json:"missed"` // objectives not met, one sentence each
	// Previous is when the previous drill ran (its figures are beside each
	// entry's own).
	Previous *PreviousRun `json:"previous,omitempty"`
}

// PreviousRun sums up the drill before this one.
type PreviousRun struct {
	Time    time.Time `json:"time"`
	Success bool      `json:"success"`
}

// RegionReport is the drill of one region.
type RegionReport struct {
	Region string `json:"region"`
	// Up: the repository opened in this region alone and its manifests
	// were read. A region that is not up cannot serve a restore.
	Up          bool    `json:"up"`
	Error       string  `json:"error,omitempty"`
	OpenSeconds float64 `json:"open_seconds"` // config, keys, index and manifests from this region
	Snapshots   int     `json:"snapshots"`    // manifests the region holds
	Sets        []Entry `json:"sets"`
}

// Entry is the drill of the newest snapshot of one host and set in one
// region. Durations are seconds; RPO and RTO are null when they could not
// be measured (no snapshot, or the region failed).
type Entry struct {
	Host         string     `json:"host"`
	Set          string     `json:"set"`
	Snapshot     string     `json:"snapshot,omitempty"`
	SnapshotTime *time.Time `json:"snapshot_time,omitempty"`
	// Lagging: the repository holds a newer snapshot of this host and set
	// (Newest) that this region lacks.
	Lagging bool   `json:"lagging"`
	Newest  string `json:"newest_snapshot,omitempty"`

	SnapshotFiles  uint64  `json:"snapshot_files"`
	SnapshotBytes  uint64  `json:"snapshot_bytes"`
	PacksChecked   int     `json:"packs_checked"` // packs the snapshot needs, found in the region with their size
	SamplePercent  float64 `json:"sample_percent"`
	SampledFiles   int     `json:"sampled_files"`
	VerifiedBytes  uint64  `json:"verified_bytes"` // restored and verified against the manifest
	RestoreSeconds float64 `json:"restore_seconds"`
	Throughput     float64 `json:"throughput_bytes_per_second"`
	TTFB           float64 `json:"ttfb_seconds"`

	RPO    *float64 `json:"rpo_seconds"`
	RTO    *float64 `json:"rto_seconds"`
	MaxRPO float64  `json:"max_rpo_seconds,omitempty"`
	MaxRTO float64  `json:"max_rto_seconds,omitempty"`
	RPOMet bool     `json:"rpo_met"`
	RTOMet bool     `json:"rto_met"`
	// Verified: every pack present and every sampled byte restored and
	// verified.
	Verified bool   `json:"verified"`
	Error    string `json:"error,omitempty"`

	Previous *Figures `json:"previous,omitempty"`
}

// Figures are an entry's measurements in the previous drill.
type Figures struct {
	Snapshot   string   `json:"snapshot,omitempty"`
	RPO        *float64 `json:"rpo_seconds"`
	RTO        *float64 `json:"rto_seconds"`
	TTFB       float64  `json:"ttfb_seconds"`
	Throughput float64  `json:"throughput_bytes_per_second"`
	Verified   bool     `json:"verified"`
}

// Problem is an integrity failure found by the drill.
type Problem struct {
	Region   string `json:"region"`
	Host     string `json:"host,omitempty"`
	Set      string `json:"set,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Object   string `json:"object,omitempty"`
	Message  string `json:"message"`
}

func (p Problem) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "region %s", p.Region)
	if p.Host != "" {
		fmt.Fprintf(&b, ", host %s", p.Host)
	}
	if p.Set != "" {
		fmt.Fprintf(&b, ", set %s", p.Set)
	}
	if p.Snapshot != "" {
		fmt.Fprintf(&b, ", snapshot %s", repo.ShortID(p.Snapshot))
	}
	if p.Object != "" {
		fmt.Fprintf(&b, ", %s", p.Object)
	}
	fmt.Fprintf(&b, ": %s", p.Message)
	return b.String()
}

// attachPrevious puts the figures of prev beside each entry of rep that
// prev also measured (same region, host and set).
func (rep *Report) attachPrevious(prev *Report) {
	if prev == nil {
		return
	}
	rep.Previous = &PreviousRun{Time: prev.Time, Success: prev.Success}
	type key struct{ region, host, set string }
	old := map[key]*Entry{}
	for i := range prev.Regions {
		for j := range prev.Regions[i].Sets {
			e := &prev.Regions[i].Sets[j]
			old[key{prev.Regions[i].Region, e.Host, e.Set}] = e
		}
	}
	for i := range rep.Regions {
		for j := range rep.Regions[i].Sets {
			e := &rep.Regions[i].Sets[j]
			if p, ok := old[key{rep.Regions[i].Region, e.Host, e.Set}]; ok {
				e.Previous = &Figures{Snapshot: p.Snapshot, RPO: p.RPO, RTO: p.RTO, TTFB: p.TTFB, Throughput: p.Throughput, Verified: p.Verified}
			}
		}
	}
}
