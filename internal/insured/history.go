package insured

import (
	"context"
	"time"
)

// Dispensed is one item a person was handed out.
type Dispensed struct {
	DispenseID  string
	Item        int
	NationalID  string
	Code        string
	ATC         string
	Quantity    int
	DaysSupply  int
	DispensedAt time.Time
	// PrescriptionID and Fill are the stored prescription and the fill of
	// it the item was counted against (PrescriptionID empty: none): the
	// parts of one fill dispensed over several visits complete one supply.
	PrescriptionID string
	Fill           int
}

// History is the record of what persons were handed out.
type History interface {
	// Record appends a dispense's items; recording the same dispense id
	// again adds nothing.
	Record(ctx context.Context, items []Dispensed) error
	// Since returns a person's dispensed items from since on, newest first.
	Since(ctx context.Context, nationalID string, since time.Time) ([]Dispensed, error)
}
