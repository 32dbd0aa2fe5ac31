package rules

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nuskha/nuskha/internal/errs"
)

// versioned is a one-rule set whose version is v and which allows at most
// limit of an item.
func versioned(v string, limit int) []byte {
	return fmt.Appendf(nil, `version: %q
rules:
  - id: limit
    description: {fa: سقف, en: limit}
    scopes: [dispense]
    per: item
    expr: 'item.quantity <= %d'
    severity: reject
    message: {fa: زیاد, en: too many}
`, v, limit)
}

// broken misspells a field.
var broken = bytes.Replace(versioned("broken", 10), []byte("item.quantity"), []byte("item.quantiy"), 1)

func TestEngineReload(t *testing.T) {
	first, err := Load("v1", versioned("v1", 100))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(first)
	if e.Current() != first {
		t.Fatal("Current is not the initial set")
	}
	if err := e.Reload("v2", versioned("v2", 10)); err != nil {
		t.Fatal(err)
	}
	if v := e.Current().Version(); v != "v2" {
		t.Fatalf("version %s after reload", v)
	}
	got, err := e.Evaluate(cleanInput(ScopeDispense))
	if err != nil || len(got) != 2 {
		t.Fatalf("v2 should refuse both items: %+v %v", got, err)
	}

	err = e.Reload("broken.yaml", broken)
	if !errors.Is(err, errs.Of(errs.InvalidRuleSet)) {
		t.Fatalf("broken reload: %v", err)
	}
	if !strings.Contains(err.Error(), "broken.yaml:7:16: rule limit: expr: CEL 1:5: undefined field 'quantiy'") {
		t.Errorf("error without location: %v", err)
	}
	if v := e.Current().Version(); v != "v2" {
		t.Errorf("version %s after a refused reload; the running set must stay", v)
	}

	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := e.ReloadFile(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, versioned("v3", 10), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.ReloadFile(path); err != nil || e.Current().Version() != "v3" {
		t.Errorf("ReloadFile: %v, version %s", err, e.Current().Version())
	}
}

// Evaluations racing reloads each see one whole set: every result is the
// one its set gives, never a mix (run with -race). Each evaluator runs
// until it has seen the set change under it several times, so the test
// cannot pass without evaluations and reloads overlapping.
func TestEvaluateDuringReload(t *testing.T) {
	strict, lax := versioned("strict", 10), versioned("lax", 1000)
	first, err := Load("lax", lax)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(first)
	stop := make(chan struct{})
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data, name := lax, "lax"
			if i%2 == 0 {
				data, name = strict, "strict"
			}
			if i%5 == 0 {
				data = broken
			}
			_ = e.Reload(name, data)
		}
	}()
	const changes = 20
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := cleanInput(ScopeDispense)
			var last *Set
			for seen := 0; seen < changes; {
				set := e.Current()
				if set != last {
					seen, last = seen+1, set
				}
				got, err := set.Evaluate(in)
				if err != nil {
					t.Error(err)
					return
				}
				want := 0
				if set.Version() == "strict" {
					want = 2
				}
				if len(got) != want {
					t.Errorf("set %s gave %d violations, want %d", set.Version(), len(got), want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-reloaded
}
