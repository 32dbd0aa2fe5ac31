// Package rxstore is rxd's store: the insured-person registry (its
// generations, supplementary-cap usage and dispense history), the coding
// catalogue's versions, and the prescription exchange (prescriptions, their
// fills, claims, dispenses, receipts, cancellations, sessions, idempotency
// keys), and the callers' daily lookup budgets. Its tables are rxd's alone; trustd never opens this database.
// insured/insuredtest, catalogue/catalogtest and exchange/exchangetest are
// its conformance suites, run here over SQLite and PostgreSQL.
package rxstore

import (
	"embed"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

//go:embed migrations
var migrations embed.FS

var (
	insuredSchema   = sqlstore.Schema{Name: "insured", Files: migrations}
	catalogueSchema = sqlstore.Schema{Name: "catalogue", Files: migrations}
	exchangeSchema  = sqlstore.Schema{Name: "exchange", Files: migrations}
)

// Schemas are the schemas this package owns, with their migrations.
func Schemas() []sqlstore.Schema {
	return []sqlstore.Schema{insuredSchema, catalogueSchema, exchangeSchema, budgetsSchema}
}
