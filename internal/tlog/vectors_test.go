package tlog_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/tlog"
)

// vectors reads every JSON file under testdata/merkle/<kind> into a fresh
// value from newCase, and runs check on it.
func vectors[T any](t *testing.T, kind string, check func(t *testing.T, c T, wantErr bool)) {
	files, err := filepath.Glob(filepath.Join("testdata", "merkle", kind, "*", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("only %d %s vectors: testdata/merkle is incomplete", len(files), kind)
	}
	for _, f := range files {
		name := strings.TrimPrefix(f, filepath.Join("testdata", "merkle", kind)+string(filepath.Separator))
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var c T
			var w struct {
				WantErr bool `json:"wantErr"`
			}
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &w); err != nil {
				t.Fatal(err)
			}
			check(t, c, w.WantErr)
		})
	}
}

// TestRFCInclusionVectors: every inclusion vector, through our verifier.
func TestRFCInclusionVectors(t *testing.T) {
	type inclusion struct {
		LeafIdx  uint64   `json:"leafIdx"`
		TreeSize uint64   `json:"treeSize"`
		Root     []byte   `json:"root"`
		LeafHash []byte   `json:"leafHash"`
		Proof    [][]byte `json:"proof"`
	}
	vectors(t, "inclusion", func(t *testing.T, c inclusion, wantErr bool) {
		err := tlog.VerifyInclusion(c.LeafIdx, c.TreeSize, c.LeafHash, c.Proof, c.Root)
		if wantErr && err == nil {
			t.Fatal("verified a proof the vector says is bad")
		}
		if !wantErr && err != nil {
			t.Fatalf("refused a good proof: %v", err)
		}
	})
}

// TestRFCConsistencyVectors: every consistency vector, through our
// verifier.
func TestRFCConsistencyVectors(t *testing.T) {
	type consistency struct {
		Size1 uint64   `json:"size1"`
		Size2 uint64   `json:"size2"`
		Root1 []byte   `json:"root1"`
		Root2 []byte   `json:"root2"`
		Proof [][]byte `json:"proof"`
	}
	vectors(t, "consistency", func(t *testing.T, c consistency, wantErr bool) {
		err := tlog.VerifyConsistency(c.Size1, c.Size2, c.Proof, c.Root1, c.Root2)
		if wantErr && err == nil {
			t.Fatal("verified a proof the vector says is bad")
		}
		if !wantErr && err != nil {
			t.Fatalf("refused a good proof: %v", err)
		}
	})
}
