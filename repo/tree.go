package repo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"vaultbak/crypt"
)

// Node types, part of the format.
const (
	NodeFile    = "file"
	NodeDir     = "dir"
	NodeSymlink = "symlink"
	NodeFIFO    = "fifo"
	NodeSocket  = "socket"
	NodeChar    = "chardev"
	NodeBlock   = "blockdev"
)

// Node is one entry of a directory. Names and link targets are bytes: a file
// name need not be UTF-8.
type Node struct {
	Name       []byte     `json:"name"`
	Type       string     `json:"type"`
	Mode       uint32     `json:"mode"` // permission, setuid/setgid/sticky bits (Unix layout)
	UID        uint32     `json:"uid"`
	GID        uint32     `json:"gid"`
	User       string     `json:"user,omitempty"`
	Group      string     `json:"group,omitempty"`
	MTime      int64      `json:"mtime"` // nanoseconds since the epoch
	Size       uint64     `json:"size,omitempty"`
	Content    []crypt.ID `json:"content,omitempty"` // file: chunk IDs in order
	Hash       *crypt.ID  `json:"hash,omitempty"`    // file: keyed hash of the whole content
	Sparse     bool       `json:"sparse,omitempty"`  // file: had holes; restore recreates them
	Subtree    *crypt.ID  `json:"subtree,omitempty"` // dir: tree blob ID
	LinkTarget []byte     `json:"link_target,omitempty"`
	Rdev       uint64     `json:"rdev,omitempty"`  // char/block devices
	Links      uint64     `json:"links,omitempty"` // hard link count when > 1
	Inode      uint64     `json:"inode,omitempty"` // with Links: groups hard links
	DevID      uint64     `json:"dev,omitempty"`   // with Links: groups hard links
}

// Tree is one directory's entries, sorted by name.
type Tree struct {
	Nodes []Node `json:"nodes"`
}

// maxTreeSize bounds a decoded tree blob.
const maxTreeSize = 256 << 20

// EncodeTree returns the canonical encoding of t (nodes sorted by name);
// equal directories encode to equal bytes and so deduplicate.
func EncodeTree(t *Tree) ([]byte, error) {
	sort.Slice(t.Nodes, func(i, j int) bool { return bytes.Compare(t.Nodes[i].Name, t.Nodes[j].Name) < 0 })
	for i := 1; i < len(t.Nodes); i++ {
		if bytes.Equal(t.Nodes[i-1].Name, t.Nodes[i].Name) {
			return nil, fmt.Errorf("repo: tree has two entries named %q", t.Nodes[i].Name)
		}
	}
	return json.Marshal(t)
}

// DecodeTree parses a tree blob and checks that its names are safe to create
// under a directory: no empty name, no "." or "..", no slash or NUL.
func DecodeTree(data []byte) (*Tree, error) {
	var t Tree
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("malformed tree: %w", err)
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if len(n.Name) == 0 || bytes.Equal(n.Name, []byte(".")) || bytes.Equal(n.Name, []byte("..")) || bytes.ContainsAny(n.Name, "/\x00") {
			return nil, fmt.Errorf("malformed tree: unsafe entry name %q", n.Name)
		}
		switch n.Type {
		case NodeFile, NodeDir, NodeSymlink, NodeFIFO, NodeSocket, NodeChar, NodeBlock:
		default:
			return nil, fmt.Errorf("malformed tree: entry %q has unknown type %q", n.Name, n.Type)
		}
		if n.Type == NodeDir && n.Subtree == nil {
			return nil, fmt.Errorf("malformed tree: directory %q has no subtree", n.Name)
		}
	}
	return &t, nil
}
