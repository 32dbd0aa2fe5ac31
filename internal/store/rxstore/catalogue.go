package rxstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// Catalogue stores the coding catalogue's versions (catalogue.Store).
type Catalogue struct {
	db *sqlstore.DB
}

var _ catalogue.Store = (*Catalogue)(nil)

// NewCatalogue migrates the catalogue's tables in db and returns a store
// over them. The caller keeps ownership of db.
func NewCatalogue(ctx context.Context, db *sqlstore.DB) (*Catalogue, error) {
	if err := db.Migrate(ctx, catalogueSchema); err != nil {
		return nil, err
	}
	return &Catalogue{db: db}, nil
}

const catalogueItemColumns = `code, kind, name, name_fa, atc, form, strength, price, coverage_percent,
	prescription_only, max_quantity, professions, specialties, min_age_years, max_age_years, sex,
	controlled_class, paper_allowed`

// itemParams is the number of placeholders per item row: the version id
// and the item columns.
const itemParams = 19

// itemBatch is how many items go in one INSERT. PostgreSQL gains from
// multi-row statements (fewer round trips): 500 rows are 9 500
// placeholders, well within its 65 535, and measured as fast as any size
// here (about 55 000 items/s). SQLite runs in-process, so a round trip
// costs nothing while modernc.org/sqlite matches every placeholder against
// every argument, quadratic in the row count: one prepared single-row
// INSERT is fastest there (about 75 000 items/s against 40 000 for 20
// rows a statement).
func (c *Catalogue) itemBatch() int {
	if c.db.Dialect() == sqlstore.SQLite {
		return 1
	}
	return 500
}

// CreateVersion inserts the version and all its items in one
// transaction. A ValidFrom already used gives a store.DuplicateError for
// valid_from, whatever the dialect calls the constraint.
func (c *Catalogue) CreateVersion(ctx context.Context, info catalogue.VersionInfo, items []catalogue.Item) error {
	return c.db.Tx(ctx, func(tx *sql.Tx) error {
		var validTo any
		if !info.ValidTo.IsZero() {
			validTo = info.ValidTo.UTC()
		}
		_, err := c.db.Exec(ctx, tx, `INSERT INTO catalogue_versions (id, label, valid_from, valid_to, item_count, imported_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, info.ID, info.Label, info.ValidFrom.UTC(), validTo, len(items), info.ImportedAt.UTC())
		if field, dup := store.IsDuplicate(err); dup && (field == "valid_from" || field == "catalogue_versions_valid_from_uq") {
			// PostgreSQL names the constraint, SQLite the column: callers
			// get the column either way.
			return fmt.Errorf("%w (%v)", &store.DuplicateError{Field: "valid_from"}, err)
		}
		if err != nil {
			return err
		}
		var full *sql.Stmt
		defer func() {
			if full != nil {
				full.Close()
			}
		}()
		size := c.itemBatch()
		for start := 0; start < len(items); start += size {
			batch := items[start:min(start+size, len(items))]
			args := make([]any, 0, len(batch)*itemParams)
			for i := range batch {
				row, err := itemArgs(info.ID, &batch[i])
				if err != nil {
					return err
				}
				args = append(args, row...)
			}
			if len(batch) == size {
				// Every full batch has the same text: prepare it once.
				if full == nil {
					if full, err = tx.PrepareContext(ctx, c.db.Rebind(c.insertItems(size))); err != nil {
						return err
					}
				}
				_, err = full.ExecContext(ctx, args...)
				err = c.db.Classify(err)
			} else {
				_, err = c.db.Exec(ctx, tx, c.insertItems(len(batch)), args...)
			}
			if err != nil {
				return fmt.Errorf("sqlstore: inserting catalogue items: %w", err)
			}
		}
		return nil
	})
}

// insertItems is a multi-row INSERT of n items. SQLite gets anonymous
// placeholders: modernc.org/sqlite binds those by position, where each
// numbered one costs a string conversion per argument it is compared with.
func (c *Catalogue) insertItems(n int) string {
	anonymous := c.db.Dialect() == sqlstore.SQLite
	var b strings.Builder
	b.WriteString("INSERT INTO catalogue_items (version_id, ")
	b.WriteString(catalogueItemColumns)
	b.WriteString(") VALUES ")
	p := 1
	for r := 0; r < n; r++ {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for f := 0; f < itemParams; f++ {
			if f > 0 {
				b.WriteByte(',')
			}
			if anonymous {
				b.WriteByte('?')
			} else {
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(p))
				p++
			}
		}
		b.WriteByte(')')
	}
	return b.String()
}

func itemArgs(versionID string, it *catalogue.Item) ([]any, error) {
	professions, err := jsonList(it.Professions)
	if err != nil {
		return nil, err
	}
	specialties, err := jsonList(it.Specialties)
	if err != nil {
		return nil, err
	}
	return []any{versionID, it.Code, it.Kind, it.Name, it.NameFA, it.ATC, it.Form, it.Strength,
		it.Price, it.CoveragePercent, it.PrescriptionOnly, it.MaxQuantity, professions, specialties,
		it.MinAgeYears, it.MaxAgeYears, it.Sex, it.ControlledClass, it.PaperAllowed}, nil
}

func jsonList(l []string) (string, error) {
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// ListVersions returns every version.
func (c *Catalogue) ListVersions(ctx context.Context) ([]catalogue.VersionInfo, error) {
	rows, err := c.db.SQL().QueryContext(ctx, `SELECT id, label, valid_from, valid_to, item_count, imported_at
		FROM catalogue_versions ORDER BY valid_from`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: listing catalogue versions: %w", err)
	}
	defer rows.Close()
	var out []catalogue.VersionInfo
	for rows.Next() {
		var vi catalogue.VersionInfo
		var validTo sql.NullTime
		if err := rows.Scan(&vi.ID, &vi.Label, &vi.ValidFrom, &validTo, &vi.Items, &vi.ImportedAt); err != nil {
			return nil, fmt.Errorf("sqlstore: reading catalogue versions: %w", err)
		}
		vi.ValidFrom = utcDay(vi.ValidFrom)
		if validTo.Valid {
			vi.ValidTo = utcDay(validTo.Time)
		}
		vi.ImportedAt = vi.ImportedAt.UTC()
		out = append(out, vi)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: reading catalogue versions: %w", err)
	}
	return out, nil
}

// utcDay restores the UTC midnight that was stored: a driver may hand a
// DATE back in another location.
func utcDay(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// LoadItems returns the items of a version, or store.ErrNotFound.
func (c *Catalogue) LoadItems(ctx context.Context, versionID string) ([]catalogue.Item, error) {
	var n int
	err := c.db.SQL().QueryRowContext(ctx, c.db.Rebind(`SELECT item_count FROM catalogue_versions WHERE id = $1`), versionID).Scan(&n)
	if err == sql.ErrNoRows {
		return nil, fmt.Errorf("sqlstore: catalogue version %s: %w", versionID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading catalogue version %s: %w", versionID, err)
	}
	rows, err := c.db.SQL().QueryContext(ctx, c.db.Rebind(`SELECT `+catalogueItemColumns+`
		FROM catalogue_items WHERE version_id = $1`), versionID)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: loading catalogue version %s: %w", versionID, err)
	}
	defer rows.Close()
	items := make([]catalogue.Item, 0, n)
	// Most items name no professions or specialties; one shared decode
	// target per distinct JSON text keeps 30 000 identical "[]" or
	// "[\"physician\"]" from each allocating.
	lists := map[string][]string{}
	for rows.Next() {
		var it catalogue.Item
		var professions, specialties string
		if err := rows.Scan(&it.Code, &it.Kind, &it.Name, &it.NameFA, &it.ATC, &it.Form, &it.Strength,
			&it.Price, &it.CoveragePercent, &it.PrescriptionOnly, &it.MaxQuantity, &professions, &specialties,
			&it.MinAgeYears, &it.MaxAgeYears, &it.Sex, &it.ControlledClass, &it.PaperAllowed); err != nil {
			return nil, fmt.Errorf("sqlstore: reading catalogue version %s: %w", versionID, err)
		}
		if it.Professions, err = decodeList(lists, professions); err != nil {
			return nil, fmt.Errorf("sqlstore: catalogue item %s professions: %w", it.Code, err)
		}
		if it.Specialties, err = decodeList(lists, specialties); err != nil {
			return nil, fmt.Errorf("sqlstore: catalogue item %s specialties: %w", it.Code, err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: reading catalogue version %s: %w", versionID, err)
	}
	if len(items) != n {
		return nil, fmt.Errorf("sqlstore: catalogue version %s holds %d items, its header says %d", versionID, len(items), n)
	}
	return items, nil
}

// decodeList decodes a JSON list, sharing the result among equal texts
// (callers MUST NOT modify catalogue lists); an empty list is nil.
func decodeList(seen map[string][]string, s string) ([]string, error) {
	if l, ok := seen[s]; ok {
		return l, nil
	}
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, err
	}
	if len(l) == 0 {
		l = nil
	}
	seen[s] = l
	return l, nil
}
