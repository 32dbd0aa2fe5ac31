package tlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
)

// SignedCheckpoint is a checkpoint the log signed, as a signed note.
type SignedCheckpoint struct {
	Checkpoint
	// Note is the signed note the log made (its signatures only).
	Note     []byte
	SignedAt time.Time
	// Cosignatures are the witnesses' cosignatures of it stored so far
	// (read with the latest checkpoint).
	Cosignatures []Cosignature
}

// ErrNoCheckpoint is returned when the log has signed no checkpoint yet.
var ErrNoCheckpoint = errors.New("tlog: no checkpoint signed yet")

// ErrInconsistent is returned, and nothing is signed, when the stored
// tree does not extend the last signed checkpoint, or does not match its
// own state: the log has been tampered with, or has a bug, and MUST NOT
// sign until a person has looked.
var ErrInconsistent = errors.New("tlog: stored tree is inconsistent with the last signed checkpoint")

// Store is the log's storage (store/tlogstore, over PostgreSQL or SQLite).
// Appending is the store's own business (in the caller's transaction);
// the log only sequences, signs and reads.
type Store interface {
	TileReader
	// Sequence runs f once, in one transaction holding the log's lock,
	// with the tree state and the oldest pending entries (at most max,
	// in the order they were appended). If f returns a batch, the store
	// writes its entries, tiles and state and removes the pending entries
	// f was given: all of it or nothing. A tile append MUST fail unless
	// the tile holds exactly its Offset hashes.
	Sequence(ctx context.Context, max int, f func(TreeState, [][]byte) (*Batch, error)) (int, error)
	// Publish runs f in one transaction holding the log's lock, with the
	// tree state, the last checkpoint stored (nil if none) and a reader of
	// tiles in that transaction. The checkpoint f returns, if any, is
	// stored; it MUST be larger than the last.
	Publish(ctx context.Context, f func(TreeState, *SignedCheckpoint, TileReader) (*SignedCheckpoint, error)) error
	// LatestCheckpoint is the last checkpoint signed (ErrNoCheckpoint if
	// none).
	LatestCheckpoint(ctx context.Context) (*SignedCheckpoint, error)
	// ReadEntries returns up to n sequenced entries from index first.
	ReadEntries(ctx context.Context, first uint64, n int) ([][]byte, error)
	// AddCosignature stores a witness's cosignature (verified) of the
	// checkpoint of size entries, which MUST be stored; a second one by
	// the same witness of the same checkpoint is dropped.
	AddCosignature(ctx context.Context, size uint64, c Cosignature, at time.Time) error
}

// Config configures a Log.
type Config struct {
	// Origin is the log's name in its checkpoints (C2SP tlog-checkpoint):
	// it MUST NOT change for the life of the log, whatever key signs.
	Origin string
	// Key signs checkpoints.
	Key *NoteKey
	// BatchSize is the most entries sequenced in one transaction
	// (default 1024).
	BatchSize int
	// Witnesses are asked to cosign each new checkpoint (C2SP
	// tlog-witness), in the background while Run runs; none: checkpoints
	// are served with the log's signature alone.
	Witnesses []Witness
	// WitnessHTTP reaches the witnesses [a client with a 10 s timeout].
	WitnessHTTP *http.Client
	// Metrics registers the witness metrics (nil: not exported).
	Metrics prometheus.Registerer
	Now     func() time.Time
	Logger  *slog.Logger
}

// Log sequences pending entries into the tree and signs checkpoints.
// Any number of Logs may run over one store (one per process): the
// store's lock orders them.
type Log struct {
	store       Store
	origin      string
	key         *NoteKey
	batch       int
	now         func() time.Time
	log         *slog.Logger
	witnesses   []*witness
	witnessHTTP *http.Client
	wm          *witnessMetrics
}

// maxBatchesPerStep bounds the sequencing between two checkpoints, so a
// flood of entries cannot hold checkpoints back.
const maxBatchesPerStep = 64

// New returns the log over store.
func New(store Store, cfg Config) (*Log, error) {
	if cfg.Origin == "" || strings.ContainsAny(cfg.Origin, " \t\r\n") {
		return nil, errors.New("tlog: the origin must be one line without spaces")
	}
	if cfg.Key == nil {
		return nil, errors.New("tlog: a checkpoint key is needed")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	witnesses, err := newWitnesses(cfg.Witnesses)
	if err != nil {
		return nil, err
	}
	if cfg.WitnessHTTP == nil {
		cfg.WitnessHTTP = &http.Client{Timeout: 10 * time.Second}
	}
	// A witness's URL is where checkpoints go: its redirect must not send
	// the log's requests (from the process holding the HSM keys) to an
	// address of its choosing. A 3xx is refused like any other status.
	client := *cfg.WitnessHTTP
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.WitnessHTTP = &client
	var wm *witnessMetrics
	if len(witnesses) > 0 {
		wm = newWitnessMetrics(cfg.Metrics)
	}
	return &Log{store: store, origin: cfg.Origin, key: cfg.Key, batch: cfg.BatchSize, now: cfg.Now, log: cfg.Logger,
		witnesses: witnesses, witnessHTTP: cfg.WitnessHTTP, wm: wm}, nil
}

// Origin is the log's origin.
func (l *Log) Origin() string { return l.origin }

// Sequence moves one batch of pending entries into the tree and returns
// how many it moved. An entry that does not decode canonically stops the
// batch: the store's append refuses such entries, so one here was put
// there some other way.
func (l *Log) Sequence(ctx context.Context) (int, error) {
	return l.store.Sequence(ctx, l.batch, func(st TreeState, pending [][]byte) (*Batch, error) {
		if len(pending) == 0 {
			return nil, nil
		}
		for i, e := range pending {
			if _, err := Decode(e); err != nil {
				return nil, fmt.Errorf("tlog: pending entry %d of the batch: %w", i, err)
			}
		}
		return sequence(st, pending)
	})
}

// Publish signs a checkpoint of the tree as it is, if it has grown since
// the last one, and returns the latest checkpoint. It refuses
// (ErrInconsistent) unless the tiles give the state's root and the tree
// provably extends the last checkpoint signed.
func (l *Log) Publish(ctx context.Context) (*SignedCheckpoint, error) {
	var out *SignedCheckpoint
	err := l.store.Publish(ctx, func(st TreeState, last *SignedCheckpoint, tiles TileReader) (*SignedCheckpoint, error) {
		if last != nil {
			switch {
			case st.Size < last.Size:
				return nil, fmt.Errorf("%w: the tree has %d entries, %d were signed", ErrInconsistent, st.Size, last.Size)
			case st.Size == last.Size && !bytes.Equal(st.Root, last.Root):
				return nil, fmt.Errorf("%w: another root for size %d", ErrInconsistent, st.Size)
			case st.Size == last.Size:
				out = last
				return nil, nil
			}
		}
		root, err := RootAt(ctx, tiles, st.Size)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInconsistent, err)
		}
		if !bytes.Equal(root, st.Root) {
			return nil, fmt.Errorf("%w: the tiles do not give the state's root at size %d", ErrInconsistent, st.Size)
		}
		if last != nil && last.Size > 0 {
			p, err := ConsistencyProof(ctx, tiles, last.Size, st.Size)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInconsistent, err)
			}
			if err := VerifyConsistency(last.Size, st.Size, p, last.Root, st.Root); err != nil {
				return nil, fmt.Errorf("%w: size %d does not extend the signed size %d: %w", ErrInconsistent, st.Size, last.Size, err)
			}
		}
		cp := Checkpoint{Origin: l.origin, Size: st.Size, Root: st.Root}
		signed, err := l.key.sign(cp)
		if err != nil {
			return nil, err
		}
		out = &SignedCheckpoint{Checkpoint: cp, Note: signed, SignedAt: l.now().UTC()}
		return out, nil
	})
	if err != nil {
		if errors.Is(err, ErrInconsistent) {
			l.log.ErrorContext(ctx, "audit log: refusing to sign a checkpoint", "err", err)
		}
		return nil, err
	}
	return out, nil
}

// Run sequences what is pending and publishes a checkpoint on every tick,
// until ctx ends. Production ticks every second; tests drive it with a
// channel of their own. Failures are logged and retried on the next tick;
// an inconsistency is refused on every tick until a person has looked.
// It also runs the witnesses' submissions, and returns once they stopped.
func (l *Log) Run(ctx context.Context, tick <-chan time.Time) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, w := range l.witnesses {
		wg.Go(func() { l.runWitness(ctx, w) })
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if err := l.Step(ctx); err != nil && ctx.Err() == nil {
				l.log.ErrorContext(ctx, "audit log step failed", "err", err)
			}
		}
	}
}

// Step sequences the pending entries (up to a bound) and publishes.
func (l *Log) Step(ctx context.Context) error {
	for range maxBatchesPerStep {
		n, err := l.Sequence(ctx)
		if err != nil {
			return err
		}
		if n < l.batch {
			break
		}
	}
	if _, err := l.Publish(ctx); err != nil {
		return err
	}
	l.kickWitnesses()
	return nil
}

// NoteKey signs checkpoints: an Ed25519 note key (C2SP signed-note).
type NoteKey struct {
	signer   note.Signer
	verifier note.Verifier
	vkey     string
}

// VerifierKey is the key's public half in note form
// (name+hash+base64), what auditors configure.
func (k *NoteKey) VerifierKey() string { return k.vkey }

// Verifier verifies the key's signatures.
func (k *NoteKey) Verifier() note.Verifier { return k.verifier }

// sign signs the checkpoint and checks that the note it made says exactly
// the checkpoint, under this key: what is signed is what was validated.
func (k *NoteKey) sign(cp Checkpoint) ([]byte, error) {
	signed, err := note.Sign(&note.Note{Text: string(cp.Marshal())}, k.signer)
	if err != nil {
		return nil, fmt.Errorf("tlog: signing checkpoint: %w", err)
	}
	got, err := VerifyCheckpoint(signed, cp.Origin, k.verifier)
	if err != nil || got.Size != cp.Size || !bytes.Equal(got.Root, cp.Root) {
		return nil, fmt.Errorf("tlog: the signed checkpoint is not the one validated (%v)", err)
	}
	return signed, nil
}
