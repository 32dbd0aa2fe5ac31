package trustd_test

import (
	"context"
	"errors"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/trustd"
)

// auditDown fails every audit write of a failure.
type auditDown struct{}

var errAuditDown = errors.New("audit disk full")

func (auditDown) Record(_ context.Context, e audit.Event) error {
	if e.Outcome == audit.Failed {
		return errAuditDown
	}
	return nil
}

// TestFailedARLWithoutItsAudit: an ARL ceremony that fails, and whose
// failure the audit log cannot record, tells the operator both.
func TestFailedARLWithoutItsAudit(t *testing.T) {
	p := testpki.New(t, nil, time.Now)
	// Number 0 is refused by the CRL checks, after the ceremony's own.
	_, err := trustd.SignARLWith(context.Background(), auditDown{}, ceremony.ARLRequest{Number: big.NewInt(0), ThisUpdate: time.Now()},
		p.Root, p.RootKey, p.Linter, filepath.Join(t.TempDir(), "root.crl"))
	if err == nil || !errors.Is(err, errAuditDown) {
		t.Fatalf("got %v; want the ceremony's failure with the audit log's", err)
	}
}
