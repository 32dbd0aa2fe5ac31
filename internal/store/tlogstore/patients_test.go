package tlogstore_test

import (
	"testing"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

// TestPatientEntries: a patient's entries are found by pseudonym once
// sequenced, newest first, paged by index, and none of another patient's
// or of no patient's is among them.
func TestPatientEntries(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		a, b := tlog.Pseudonym{0xaa, 1}, tlog.Pseudonym{0xbb, 2}
		var es []*tlog.Entry
		var want []uint64 // a's indexes
		for i := range 700 {
			e := entry(i)
			switch i % 3 {
			case 0:
				e.Patient = a
				want = append(want, uint64(i))
			case 1:
				e.Patient = b
			default:
				e.Patient = tlog.Pseudonym{}
			}
			es = append(es, e)
		}
		if err := s.Append(ctx, es...); err != nil {
			t.Fatal(err)
		}
		got, err := s.PatientEntries(ctx, a, 0, 10)
		if err != nil || len(got) != 0 {
			t.Fatalf("before sequencing: %d entries, %v; want none (pending entries are not indexed)", len(got), err)
		}
		publish(t, newLog(t, s, 256))
		var idx []uint64
		var before uint64
		for {
			page, err := s.PatientEntries(ctx, a, before, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				if e.Entry.Patient != a || e.Entry.Outcome != audit.OK {
					t.Fatalf("entry %d: patient %x", e.Index, e.Entry.Patient[:2])
				}
				idx = append(idx, e.Index)
			}
			if len(page) < 100 {
				break
			}
			before = page[len(page)-1].Index
		}
		if len(idx) != len(want) {
			t.Fatalf("%d entries of a, want %d", len(idx), len(want))
		}
		for i, v := range idx {
			if w := want[len(want)-1-i]; v != w {
				t.Fatalf("entry %d of the pages is index %d, want %d (newest first)", i, v, w)
			}
		}
		if _, err := s.PatientEntries(ctx, a, 0, tlogstore.MaxPatientPage+1); err == nil {
			t.Fatal("a page over the limit was accepted")
		}
		if _, err := s.PatientEntries(ctx, tlog.Pseudonym{}, 0, 10); err == nil {
			t.Fatal("the zero pseudonym was accepted")
		}
	})
}
