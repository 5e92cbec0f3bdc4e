package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"vaultbak/backend"
	"vaultbak/backend/s3"
	"vaultbak/backend/s3/s3test"
	"vaultbak/backup"
	"vaultbak/crypt"
	"vaultbak/repo"
)

// BenchmarkBackupMinIO is the initial backup of the dataset into a new
// repository on ONE MinIO region and on THREE (one server each, all on
// this machine), side by side in every iteration (their order alternates),
// and reports both wall times and their ratio. A backup encrypts each pack
// once and uploads it to every region concurrently, so three regions
// should cost little more than one: the goal is a ratio of at most 1.3.
//
//	go test -run '^$' -bench BackupMinIO -benchtime 2x ./bench
//
// It needs MinIO (scripts/minio.sh install) and fails without it. The
// servers share the machine's cores with the backup, so on a small machine
// the ratio also measures MinIO's own CPU cost of taking the writes.
func BenchmarkBackupMinIO(b *testing.B) {
	ds := loadDataset(b)
	servers := make([]*s3test.Server, 3)
	for i := range servers {
		servers[i] = s3test.Start(b, s3test.Options{})
	}
	var took, cpuTook, serverCPU [4]time.Duration // by region count
	var stored [4]int64
	b.ResetTimer()
	b.StopTimer()
	for i := range b.N {
		order := []int{1, 3}
		if i%2 == 1 {
			order = []int{3, 1}
		}
		for _, n := range order {
			srv0 := childrenCPU()
			d, c, s := backupMinIO(b, ds, servers[:n], fmt.Sprintf("bench-%d-%d", i, n))
			took[n] += d
			cpuTook[n] += c
			serverCPU[n] += childrenCPU() - srv0
			stored[n] = s
		}
	}
	one, three := took[1].Seconds()/float64(b.N), took[3].Seconds()/float64(b.N)
	mb := float64(ds.Bytes) / 1e6
	b.ReportMetric(one, "s/1-region")
	b.ReportMetric(three, "s/3-regions")
	b.ReportMetric(three/one, "3v1-ratio")
	b.ReportMetric(mb/one, "MB/s-1-region")
	b.ReportMetric(mb/three, "MB/s-3-regions")
	perOp := func(d time.Duration) float64 { return d.Seconds() / float64(b.N) }
	b.Logf("dataset %.0f MiB (%d files), %.0f MiB stored per region, %d iteration(s), %d CPUs\n"+
		"  1 region:  %.2fs (%.0f MB/s); CPU: vaultbak %.1fs, MinIO %.1fs\n"+
		"  3 regions: %.2fs (%.0f MB/s); CPU: vaultbak %.1fs, MinIO %.1fs\n"+
		"  ratio 3/1: %.2f (goal <= 1.30)",
		float64(ds.Bytes)/(1<<20), ds.Files, float64(stored[1])/(1<<20), b.N, runtime.NumCPU(),
		one, mb/one, perOp(cpuTook[1]), perOp(serverCPU[1]),
		three, mb/three, perOp(cpuTook[3]), perOp(serverCPU[3]), three/one)
}

// childrenCPU sums the CPU time (user + system) of this process's live
// children, the MinIO servers, from /proc; 0 where there is none.
func childrenCPU() time.Duration {
	self := os.Getpid()
	dirs, _ := os.ReadDir("/proc")
	var ticks int64
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15); comm may hold spaces.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += ut + st
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// backupMinIO initialises a repository in bucket on each of servers and
// times one backup of the dataset into it. It returns the wall and process
// CPU time of the backup and the bytes stored in the first region.
func backupMinIO(b *testing.B, ds *dataset, servers []*s3test.Server, bucket string) (time.Duration, time.Duration, int64) {
	b.Helper()
	ctx := context.Background()
	regions := func() []*repo.Region {
		var out []*repo.Region
		for i, srv := range servers {
			be, err := s3.New(srv.Config(bucket, "vb"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { be.Close() })
			out = append(out, &repo.Region{Name: fmt.Sprintf("minio-%d", i+1), Backend: be})
		}
		return out
	}
	for _, srv := range servers {
		srv.Backend(b, bucket, "vb") // creates the bucket
	}
	id, err := recovery()
	if err != nil {
		b.Fatal(err)
	}
	recipient, ok := crypt.IdentityRecipient(id)
	if !ok {
		b.Fatal("the recovery identity has no recipient")
	}
	r, host, err := repo.Init(ctx, regions(), repo.InitOptions{Recovery: []string{recipient}, Host: "bench", Now: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	r.Close()
	regs := regions()
	r, err = repo.Open(ctx, regs, repo.Keys{Host: host})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	runtime.GC()
	var cpu cpuClock
	b.StartTimer()
	start := time.Now()
	cpu.start()
	res, err := backup.Run(ctx, r, backup.Options{Paths: []string{ds.Root}}, nil)
	cpu.stop()
	wall := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if len(res.Lagging) > 0 {
		b.Fatalf("backup to %d MinIO regions: regions lag: %v", len(servers), res.Lagging)
	}
	var size int64
	if err := regs[0].Backend.List(ctx, "", func(fi backend.Info) error { size += fi.Size; return nil }); err != nil {
		b.Fatal(err)
	}
	return wall, cpu.total, size
}
