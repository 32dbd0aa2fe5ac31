package catalogue_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// openSQLite is a fresh embedded store; the PostgreSQL runs of the same
// suites are in store/rxstore.
func openSQLite(t testing.TB) catalogue.Store {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), sqlstore.SQLite, filepath.Join(t.TempDir(), "rxd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := rxstore.NewCatalogue(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServiceSQLite(t *testing.T) {
	catalogtest.RunService(t, func(t *testing.T) catalogue.Store { return openSQLite(t) })
}

// flaky is a store whose calls can be made to fail.
type flaky struct {
	catalogue.Store
	failCreate, failList, failLoad atomic.Bool
	loads                          atomic.Int32
}

var errDown = errors.New("database is down")

func (f *flaky) CreateVersion(ctx context.Context, info catalogue.VersionInfo, items []catalogue.Item) error {
	if f.failCreate.Load() {
		return errDown
	}
	return f.Store.CreateVersion(ctx, info, items)
}

func (f *flaky) ListVersions(ctx context.Context) ([]catalogue.VersionInfo, error) {
	if f.failList.Load() {
		return nil, errDown
	}
	return f.Store.ListVersions(ctx)
}

func (f *flaky) LoadItems(ctx context.Context, id string) ([]catalogue.Item, error) {
	f.loads.Add(1)
	if f.failLoad.Load() {
		return nil, errDown
	}
	return f.Store.LoadItems(ctx, id)
}

func importSample(t *testing.T, c *catalogue.Catalogue, from time.Time) (catalogue.ImportResult, error) {
	t.Helper()
	d, s := catalogtest.Sample()
	return c.Import(context.Background(), catalogue.ImportSpec{Label: "sample", ValidFrom: from}, strings.NewReader(d), strings.NewReader(s))
}

func TestStoreFailures(t *testing.T) {
	ctx := context.Background()
	day := catalogtest.Date(2026, 3, 21)

	t.Run("a failed write publishes nothing", func(t *testing.T) {
		f := &flaky{Store: openSQLite(t)}
		c, _ := catalogue.New(catalogue.Config{Store: f})
		f.failCreate.Store(true)
		if _, err := importSample(t, c, day); !errors.Is(err, errDown) || errs.CodeOf(err) != errs.Unavailable {
			t.Fatalf("got %v, want unavailable", err)
		}
		if _, err := c.At(ctx, day); errs.CodeOf(err) != errs.CatalogueNotInForce {
			t.Fatalf("At after a failed import: %v", err)
		}
	})

	t.Run("a failed load is retried, a good one is not repeated", func(t *testing.T) {
		f := &flaky{Store: openSQLite(t)}
		writer, _ := catalogue.New(catalogue.Config{Store: f})
		if _, err := importSample(t, writer, day); err != nil {
			t.Fatal(err)
		}
		// A second Catalogue has nothing cached, like another process.
		c, _ := catalogue.New(catalogue.Config{Store: f})
		f.failLoad.Store(true)
		if _, err := c.At(ctx, day); !errors.Is(err, errDown) || errs.CodeOf(err) != errs.Unavailable {
			t.Fatalf("got %v, want unavailable", err)
		}
		f.failLoad.Store(false)
		for i := 0; i < 3; i++ {
			if v, err := c.At(ctx, day); err != nil || v.Len() != 19 {
				t.Fatalf("At = %v, %v", v, err)
			}
		}
		if n := f.loads.Load(); n != 2 {
			t.Fatalf("%d loads, want the failed one and one more", n)
		}
	})

	t.Run("the versions list is unavailable", func(t *testing.T) {
		f := &flaky{Store: openSQLite(t)}
		c, _ := catalogue.New(catalogue.Config{Store: f})
		f.failList.Store(true)
		if _, err := c.At(ctx, day); errs.CodeOf(err) != errs.Unavailable {
			t.Fatalf("At: %v", err)
		}
		if _, err := importSample(t, c, day); errs.CodeOf(err) != errs.Unavailable {
			t.Fatalf("Import: %v", err)
		}
		f.failList.Store(false)
		if vs, err := c.Versions(ctx); err != nil || len(vs) != 0 {
			t.Fatalf("Versions = %v, %v", vs, err)
		}
	})

	t.Run("a cancelled caller does not fail the load for others", func(t *testing.T) {
		f := &flaky{Store: openSQLite(t)}
		writer, _ := catalogue.New(catalogue.Config{Store: f})
		if _, err := importSample(t, writer, day); err != nil {
			t.Fatal(err)
		}
		c, _ := catalogue.New(catalogue.Config{Store: f})
		if _, err := c.Versions(ctx); err != nil { // so that At's list is fresh
			t.Fatal(err)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		_, _ = c.At(cancelled, day) // starts the load, and may or may not wait for it
		if v, err := c.At(ctx, day); err != nil || v.Len() != 19 {
			t.Fatalf("At after a cancelled caller = %v, %v", v, err)
		}
		if n := f.loads.Load(); n != 1 {
			t.Fatalf("%d loads: the cancelled caller's load failed and was repeated", n)
		}
	})
}

func TestNewNeedsAStore(t *testing.T) {
	if _, err := catalogue.New(catalogue.Config{}); err == nil {
		t.Fatal("New without a store succeeded")
	}
}
