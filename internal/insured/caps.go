package insured

import "context"

// Cap is one annual supplementary cap: whose, which plan, which Solar
// Hijri year and which benefit category.
type Cap struct {
	NationalID string
	Insurer    string
	Plan       string
	Year       int // Solar Hijri
	Category   string
}

// Consumption asks supplementary insurance to pay Amount against a cap of
// Limit rials. Key makes it idempotent: the same key consumes once, and a
// retry gets the first answer.
type Consumption struct {
	Key    string
	Cap    Cap
	Limit  int64
	Amount int64
}

// Usage is where cap consumption is kept. Consume pays min(Amount, what
// is left of Limit), never driving the remainder below zero however many
// dispenses race for it, and returns what it paid.
type Usage interface {
	Consume(ctx context.Context, c Consumption) (paid int64, err error)
	Used(ctx context.Context, c Cap) (int64, error)
}
