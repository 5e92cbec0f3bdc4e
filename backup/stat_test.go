package backup

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestStatTimes checks what the per-system statTimes reads: lstat (through
// the walk's fs.FileInfo) and fstat (through the open file) give the same
// stat, whose mtime is the one set, to the nanosecond, and whose
// permissions are the ones set.
func TestStatTimes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("content"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o640); err != nil { // whatever the umask
		t.Fatal(err)
	}
	mtime := time.Unix(1700000000, 123456789)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	walked := statOf(fi)
	if walked.mtime != mtime.UnixNano() {
		t.Errorf("mtime %d, want %d", walked.mtime, mtime.UnixNano())
	}
	if walked.ctime == 0 || walked.ctime == walked.mtime {
		t.Errorf("ctime %d beside mtime %d: not read from the change time", walked.ctime, walked.mtime)
	}
	if walked.perm != 0o640 {
		t.Errorf("perm %#o, want 0o640", walked.perm)
	}

	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	opened, err := fstat(fd, fileJob{abs: p})
	if err != nil {
		t.Fatal(err)
	}
	if opened != walked {
		t.Errorf("fstat gives %+v, lstat %+v", opened, walked)
	}
}
