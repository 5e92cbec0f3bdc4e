package backup

import (
	"io/fs"
	"os/user"
	"strconv"
	"sync"
	"syscall"

	"vaultbak/repo"
)

// stat is what backup needs from lstat(2).
type stat struct {
	mode         fs.FileMode
	perm         uint32 // permission + setuid/setgid/sticky, Unix layout
	uid, gid     uint32
	size         int64
	blocks       int64
	mtime, ctime int64 // ns
	ino, dev     uint64
	nlink        uint64
	rdev         uint64
}

func statOf(fi fs.FileInfo) stat {
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		return statOfSys(fi.Mode(), sys)
	}
	return stat{mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime().UnixNano(), perm: uint32(fi.Mode().Perm())}
}

// regularMode is the fs.FileMode of a regular file whose st_mode is m.
func regularMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// statOfSys is statOf for what a stat system call filled in; mode is the
// file's mode as fs.FileMode. Stat_t's field names and widths differ
// between systems: the conversions here widen each field to the width
// stat keeps, and statTimes (one file per naming) reads the times.
func statOfSys(mode fs.FileMode, sys *syscall.Stat_t) stat {
	mtime, ctime := statTimes(sys)
	return stat{
		mode:   mode,
		size:   sys.Size,
		mtime:  mtime,
		perm:   uint32(sys.Mode) & 0o7777,
		uid:    sys.Uid,
		gid:    sys.Gid,
		blocks: sys.Blocks,
		ctime:  ctime,
		ino:    sys.Ino,
		dev:    uint64(sys.Dev),
		nlink:  uint64(sys.Nlink),
		rdev:   uint64(sys.Rdev),
	}
}

// names caches uid and gid lookups.
type names struct {
	mu     sync.Mutex
	users  map[uint32]string
	groups map[uint32]string
}

func (n *names) user(uid uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.users[uid]; ok {
		return s
	}
	s := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		s = u.Username
	}
	n.users[uid] = s
	return s
}

func (n *names) group(gid uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.groups[gid]; ok {
		return s
	}
	s := ""
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		s = g.Name
	}
	n.groups[gid] = s
	return s
}

// baseNode fills the metadata common to every node type.
func (b *backuper) baseNode(name string, st stat) repo.Node {
	n := repo.Node{
		Name:  []byte(name),
		Mode:  st.perm,
		UID:   st.uid,
		GID:   st.gid,
		User:  b.names.user(st.uid),
		Group: b.names.group(st.gid),
		MTime: st.mtime,
	}
	switch {
	case st.mode.IsRegular():
		n.Type = repo.NodeFile
	case st.mode.IsDir():
		n.Type = repo.NodeDir
	case st.mode&fs.ModeSymlink != 0:
		n.Type = repo.NodeSymlink
	case st.mode&fs.ModeNamedPipe != 0:
		n.Type = repo.NodeFIFO
	case st.mode&fs.ModeSocket != 0:
		n.Type = repo.NodeSocket
	case st.mode&fs.ModeCharDevice != 0:
		n.Type = repo.NodeChar
		n.Rdev = st.rdev
	case st.mode&fs.ModeDevice != 0:
		n.Type = repo.NodeBlock
		n.Rdev = st.rdev
	}
	return n
}
