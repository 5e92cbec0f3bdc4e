package faulty

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"vaultbak/backend"
)

// Op is a Backend method that a fault can target.
type Op int

// The operations a fault can target.
const (
	OpPut Op = iota + 1
	OpGet
	OpOpen
	OpStat
	OpList
	OpDelete
)

func (op Op) String() string {
	switch op {
	case OpPut:
		return "Put"
	case OpGet:
		return "Get"
	case OpOpen:
		return "Open"
	case OpStat:
		return "Stat"
	case OpList:
		return "List"
	case OpDelete:
		return "Delete"
	}
	return fmt.Sprintf("Op(%d)", int(op))
}

type kind int

const (
	fail    kind = iota // return err without calling the inner backend
	drop                // Put: return nil without storing anything
	corrupt             // Put: store the data with one byte flipped
)

func (k kind) String() string {
	return [...]string{"fail", "drop", "corrupt"}[k]
}

type fault struct {
	op     Op
	substr string
	kind   kind
	err    error
	times  int // as scripted; < 0 means forever
	left   int // firings left; < 0 means forever
	fired  int
}

func (f *fault) String() string {
	s := fmt.Sprintf("%s %s on names containing %q", f.kind, f.op, f.substr)
	if f.kind == fail {
		s += fmt.Sprintf(" with %q", f.err)
	}
	return s
}

// Faulty is a backend.Backend that passes calls to an inner Backend unless a
// scripted fault matches them. It is safe for concurrent use.
type Faulty struct {
	inner backend.Backend

	mu     sync.Mutex
	faults []*fault
}

var _ backend.Backend = (*Faulty)(nil)

// New returns a Faulty around inner with no faults scripted.
func New(inner backend.Backend) *Faulty {
	return &Faulty{inner: inner}
}

// AddFault makes the next times calls of op on a name containing
// nameSubstring (for OpList: a prefix containing it) return err without
// reaching the inner backend. times < 0 means every such call. An empty
// nameSubstring matches every call.
func (f *Faulty) AddFault(op Op, nameSubstring string, err error, times int) {
	if err == nil {
		panic("faulty: AddFault with a nil error")
	}
	f.add(&fault{op: op, substr: nameSubstring, kind: fail, err: err}, times)
}

// AddDrop makes the next times Puts of a name containing nameSubstring
// return nil without storing anything, like a provider that acknowledges a
// write and loses it.
func (f *Faulty) AddDrop(nameSubstring string, times int) {
	f.add(&fault{op: OpPut, substr: nameSubstring, kind: drop}, times)
}

// AddCorruptPut makes the next times Puts of a name containing nameSubstring
// store the data with its middle byte inverted (an empty object is stored as
// one byte instead) and return nil. The caller's slice is not modified.
func (f *Faulty) AddCorruptPut(nameSubstring string, times int) {
	f.add(&fault{op: OpPut, substr: nameSubstring, kind: corrupt}, times)
}

func (f *Faulty) add(flt *fault, times int) {
	if times == 0 {
		panic("faulty: a fault scripted to fire 0 times")
	}
	flt.times, flt.left = times, times
	f.mu.Lock()
	f.faults = append(f.faults, flt)
	f.mu.Unlock()
}

// fire returns the first fault that matches op and name and still has
// firings left, counting this firing, or nil.
func (f *Faulty) fire(op Op, name string) *fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, flt := range f.faults {
		if flt.op != op || flt.left == 0 || !strings.Contains(name, flt.substr) {
			continue
		}
		if flt.left > 0 {
			flt.left--
		}
		flt.fired++
		return flt
	}
	return nil
}

// VerifyAllFired fails t for every fault scripted to fire a finite number of
// times that has not fired at all.
func (f *Faulty) VerifyAllFired(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, flt := range f.faults {
		if flt.times > 0 && flt.fired == 0 {
			t.Errorf("faulty: fault never fired: %v (scripted %d times)", flt, flt.times)
		}
	}
}
