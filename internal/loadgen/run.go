package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/exchange/client"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/tlsconf"
)

// Operations, as reported.
const (
	OpConnect   = "connect" // each client's first connection, before the clock starts
	OpPrescribe = "prescribe"
	OpSession   = "session"
	OpClaim     = "claim"
	OpDispense  = "dispense"
	OpClose     = "close"
)

// RunOptions say what load to offer.
type RunOptions struct {
	// Manifest is Setup's manifest; URL rxd's https:// address.
	Manifest, URL string
	// N prescriptions, for persons First..First+N-1 of the registry (a
	// person each: a second run takes persons the first did not).
	N, First int
	// Clients submit concurrently, each on its own connection.
	Clients int
	// Rate, if positive, is the prescriptions per second offered, open
	// loop: each submission is due at its time whatever the answers
	// before it, and its latency counts from then, so that time waiting
	// for a free client is in it. Zero: each client submits as soon as
	// its last answer came (closed loop).
	Rate float64
	// Dispense has a pharmacy claim, dispense and close every accepted
	// prescription once all are submitted. Pipeline instead has the
	// client that submitted it claim, dispense and close it at once, so
	// that prescriptions and dispenses arrive together.
	Dispense, Pipeline bool
	// Acked, if set, is told of each document rxd acknowledged (its
	// operation and id), as the answer arrives.
	Acked func(op, id string)
	// Retry, if positive, is how long a prescription is sent again while
	// rxd answers 503 or 429 or does not answer (a failover, rxd
	// restarting): a prescription is content-addressed, so sending it
	// again never stores it twice — the answer to a copy is the first
	// answer. Each attempt that failed is counted in Report.Retried. Zero:
	// one attempt, as a benchmark wants.
	Retry time.Duration
	Keys  *hsm.Manager
	// Progress receives a line per phase.
	Progress io.Writer
}

// Report is what a run measured.
type Report struct {
	Signed    int
	SignTime  time.Duration
	Ops       map[string]*Op
	Prescribe time.Duration // the prescribing phase, first submission to last answer
	Pharmacy  time.Duration // the dispensing phase (or the whole run, pipelined)
	Closed    int           // prescriptions claimed, dispensed and closed
	// Retried counts the prescribing attempts that failed and were sent
	// again (RunOptions.Retry), by problem code ("transport" without an
	// answer).
	Retried map[string]int
}

// Op is one operation's answers.
type Op struct {
	OK     int
	Errors map[string]int // by problem code; "transport" without an answer
	lat    []time.Duration
}

// Quantile is the q-quantile of the successful answers' latency.
func (o *Op) Quantile(q float64) time.Duration {
	if len(o.lat) == 0 {
		return 0
	}
	return o.lat[min(len(o.lat)-1, int(q*float64(len(o.lat))))]
}

// Failed is how many calls were refused or unanswered.
func (o *Op) Failed() int {
	n := 0
	for _, c := range o.Errors {
		n += c
	}
	return n
}

// job is one prescription, signed in advance with the dispense record of
// the pharmacy that will fill it.
type job struct {
	nationalID   string
	prescription string
	id           string
	dispense     string
	pharmacy     int
	due          time.Time
}

type identity struct {
	cert   tls.Certificate
	chain  []*x509.Certificate
	number string
}

// loaded is the manifest with its keys open.
type loaded struct {
	m                       Manifest
	roots                   *x509.CertPool
	vendor                  tls.Certificate
	practitioners, pharmacy []identity
}

func load(ctx context.Context, path string, keys *hsm.Manager) (*loaded, error) {
	m, err := ReadManifest(path)
	if err != nil {
		return nil, err
	}
	l := &loaded{m: *m}
	roots, err := pemutil.ReadCertificateBundle(l.m.Root)
	if err != nil {
		return nil, err
	}
	l.roots = x509.NewCertPool()
	for _, r := range roots {
		l.roots.AddCert(r)
	}
	open := func(c Card) (identity, error) {
		chain, err := pemutil.ReadCertificateBundle(c.Chain)
		if err != nil {
			return identity{}, err
		}
		k, err := keys.OpenKey(ctx, c.Key)
		if err != nil {
			return identity{}, err
		}
		return identity{cert: tlsconf.Certificate(k, chain), chain: chain, number: c.Number}, nil
	}
	v, err := open(l.m.Vendor)
	if err != nil {
		return nil, err
	}
	l.vendor = v.cert
	for _, c := range l.m.Practitioners {
		id, err := open(c)
		if err != nil {
			return nil, err
		}
		l.practitioners = append(l.practitioners, id)
	}
	for _, c := range l.m.Pharmacies {
		id, err := open(c)
		if err != nil {
			return nil, err
		}
		l.pharmacy = append(l.pharmacy, id)
	}
	if len(l.practitioners) == 0 || len(l.pharmacy) == 0 {
		return nil, fmt.Errorf("%s names no practitioner or no pharmacy", path)
	}
	return l, nil
}

// drugs a physician may prescribe to any adult, with quantities within
// the sample catalogue's maxima (deploy/sample/drugs.csv).
var drugs = []rx.Item{
	{Kind: "drug", Code: "1000105", Quantity: 20},
	{Kind: "drug", Code: "1000210", Quantity: 20},
	{Kind: "drug", Code: "1000315", Quantity: 60},
	{Kind: "drug", Code: "1000420", Quantity: 30},
	{Kind: "drug", Code: "1000525", Quantity: 28},
	{Kind: "drug", Code: "1000840", Quantity: 2},
}

// sign pre-signs the N prescriptions and their dispense records on every
// core.
func (l *loaded) sign(o RunOptions, now time.Time) ([]job, error) {
	jobs := make([]job, o.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, runtime.GOMAXPROCS(0))
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= o.N {
					return
				}
				if err := l.signOne(&jobs[i], i, o, now); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return jobs, <-errc
}

func (l *loaded) signOne(j *job, i int, o RunOptions, now time.Time) error {
	person := o.First + i
	doctor := l.practitioners[i%len(l.practitioners)]
	j.nationalID = NationalID(l.m.Base, person)
	j.id = rx.NewID()
	items := []rx.Item{drugs[i%len(drugs)], drugs[(i+1)%len(drugs)]}
	p := &rx.Prescription{V: rx.Version, Type: rx.KindPrescription, ID: j.id, IssuedAt: now,
		Patient:    rx.Patient{NationalID: j.nationalID, Name: "بیمار آزمون", BirthDate: fmt.Sprintf("%d-%02d-%02d", 1951+person%60, person%12+1, person%28+1), Sex: []string{"female", "male"}[person%2]},
		Prescriber: rx.Prescriber{CouncilNumber: doctor.number, Profession: "physician", Specialty: "cardiology"},
		Practice:   rx.Practice{Name: "درمانگاه آزمون"},
		Items:      items}
	var err error
	if j.prescription, err = rx.Sign(p, doctor.cert.PrivateKey.(hsm.Key), doctor.chain, now); err != nil {
		return err
	}
	// The client that takes the prescription from the queue is not known
	// in advance; the pharmacy is, by prescription.
	j.pharmacy = i % len(l.pharmacy)
	ph := l.pharmacy[j.pharmacy]
	d := &rx.Dispense{V: rx.Version, Type: rx.KindDispense, ID: rx.NewID(), DispensedAt: now,
		Prescription: rx.Reference{ID: j.id, JWSSHA256: rx.SHA256(j.prescription)},
		Dispenser:    rx.Dispenser{LicenceNumber: ph.number, Role: "pharmacy"}}
	for _, it := range items {
		d.Items = append(d.Items, rx.DispensedItem{Code: it.Code, Quantity: it.Quantity})
	}
	j.dispense, err = rx.Sign(d, ph.cert.PrivateKey.(hsm.Key), ph.chain, now)
	return err
}

// recorder collects the answers of every client.
type recorder struct {
	mu      sync.Mutex
	ops     map[string]*Op
	retried map[string]int
}

// code names an error as the report does: its problem code, "transport"
// without an answer, "cancelled" when the run was.
func code(err error) string {
	var p *client.Problem
	switch {
	case errors.As(err, &p):
		return p.Code
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return "cancelled"
	}
	return "transport"
}

func (r *recorder) retry(err error) {
	r.mu.Lock()
	r.retried[code(err)]++
	r.mu.Unlock()
}

func (r *recorder) record(op string, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.ops[op]
	if o == nil {
		o = &Op{Errors: map[string]int{}}
		r.ops[op] = o
	}
	if err == nil {
		o.OK++
		o.lat = append(o.lat, took)
		return
	}
	o.Errors[code(err)]++
}

// retryPause is the wait between two attempts of a prescription: short,
// so that the end of an outage is seen within it.
const retryPause = 200 * time.Millisecond

// prescribe submits jws, and again for up to o.Retry while rxd asks to
// come back later or does not answer.
func (o RunOptions) prescribe(ctx context.Context, c *client.Client, jws string, rec *recorder) (*client.PrescriptionAccepted, error) {
	deadline := time.Now().Add(o.Retry)
	for {
		acc, err := c.Prescribe(ctx, jws)
		if err == nil || !retryable(err) || ctx.Err() != nil || !time.Now().Before(deadline) {
			return acc, err
		}
		rec.retry(err)
		t := time.NewTimer(retryPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// retryable: rxd said to come back later (503, 429), or gave no answer.
func retryable(err error) bool {
	var p *client.Problem
	if errors.As(err, &p) {
		return p.Status == http.StatusServiceUnavailable || p.Status == http.StatusTooManyRequests
	}
	return !errors.Is(err, context.Canceled)
}

// Run offers the load and measures it. A refusal or a failed call is
// counted, never fatal; an error is returned only when the run cannot
// start (a bad manifest, a key that does not open).
func Run(ctx context.Context, o RunOptions) (*Report, error) {
	if o.N < 1 || o.Clients < 1 || o.Rate < 0 || o.First < 0 {
		return nil, errors.New("loadgen: N and Clients must be positive, Rate and First not negative")
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	l, err := load(ctx, o.Manifest, o.Keys)
	if err != nil {
		return nil, err
	}
	if o.First+o.N > l.m.Persons {
		return nil, fmt.Errorf("the registry holds %d persons: persons %d..%d do not exist (setup -persons, or a smaller -first and -n)", l.m.Persons, o.First, o.First+o.N-1)
	}
	rep := &Report{}
	start := time.Now()
	jobs, err := l.sign(o, start)
	if err != nil {
		return nil, err
	}
	rep.Signed, rep.SignTime = len(jobs), time.Since(start)
	fmt.Fprintf(o.Progress, "signed %d prescriptions and their dispense records in %s\n", rep.Signed, rep.SignTime.Round(time.Millisecond))

	rec := &recorder{ops: map[string]*Op{}, retried: map[string]int{}}
	clients := make([]*client.Client, o.Clients)
	for i := range clients {
		if clients[i], err = client.New(client.Config{BaseURL: o.URL, Roots: l.roots, Certificate: l.vendor, Retries: -1}); err != nil {
			return nil, err
		}
	}
	// One session per client and pharmacy, opened when first needed.
	sessions := make([]map[int]*client.Client, o.Clients)
	pharmacyClient := func(w, ph int) *client.Client {
		if c := sessions[w][ph]; c != nil {
			return c
		}
		c, err := client.New(client.Config{BaseURL: o.URL, Roots: l.roots, Certificate: l.vendor, Retries: -1})
		if err != nil {
			return nil
		}
		id := l.pharmacy[ph]
		t0 := time.Now()
		jws, err := client.SignSession(c.NewSessionDocument(t0), id.cert.PrivateKey.(hsm.Key), id.chain, t0)
		if err == nil {
			_, err = c.OpenSession(ctx, jws)
		}
		rec.record(OpSession, time.Since(t0), err)
		if err != nil {
			return nil
		}
		if sessions[w] == nil {
			sessions[w] = map[int]*client.Client{}
		}
		sessions[w][ph] = c
		return c
	}
	var closed atomic.Int64
	fill := func(w int, j *job, code string) {
		c := pharmacyClient(w, j.pharmacy)
		if c == nil {
			return
		}
		t0 := time.Now()
		g, err := c.Claim(ctx, client.Find{TrackingCode: code, NationalID: j.nationalID})
		rec.record(OpClaim, time.Since(t0), err)
		if err != nil {
			return
		}
		t0 = time.Now()
		d, err := c.Dispense(ctx, g.ClaimID, g.Secret, j.dispense)
		rec.record(OpDispense, time.Since(t0), err)
		if err != nil {
			return
		}
		if o.Acked != nil {
			o.Acked(OpDispense, d.ID)
		}
		t0 = time.Now()
		_, err = c.Close(ctx, g.ClaimID, g.Secret)
		rec.record(OpClose, time.Since(t0), err)
		if err == nil {
			closed.Add(1)
		}
	}

	// Every client opens its connection first, before the prescriptions'
	// clock starts: an exchange's callers keep their connections open, and
	// 256 clients opening theirs at the same moment — TLS handshakes with
	// client certificates, a third of a second of both cores here — were
	// timed as the first prescriptions' latency, the p99 of a whole open
	// loop (docs/BENCHMARKS.md, session 12). Reported apart, as connect.
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			t0 := time.Now()
			err := c.Ready(ctx)
			rec.record(OpConnect, time.Since(t0), err)
		})
	}
	wg.Wait()

	codes := make([]string, len(jobs))
	queue := make(chan int, o.Clients)
	for w := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range queue {
				j := &jobs[i]
				t0 := time.Now()
				if o.Rate > 0 {
					t0 = j.due
				}
				acc, err := o.prescribe(ctx, clients[w], j.prescription, rec)
				rec.record(OpPrescribe, time.Since(t0), err)
				if err != nil {
					continue
				}
				codes[i] = acc.TrackingCode
				if o.Acked != nil {
					o.Acked(OpPrescribe, j.id)
				}
				if o.Pipeline {
					fill(w, j, acc.TrackingCode)
				}
			}
		}()
	}
	start = time.Now()
	for i := range jobs {
		if o.Rate > 0 {
			jobs[i].due = start.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))
			if d := time.Until(jobs[i].due); d > 0 {
				time.Sleep(d) // pacing the offered load, not synchronising
			}
		}
		if ctx.Err() != nil {
			break
		}
		queue <- i
	}
	close(queue)
	wg.Wait()
	rep.Prescribe = time.Since(start)
	fmt.Fprintf(o.Progress, "submitted %d prescriptions in %s\n", len(jobs), rep.Prescribe.Round(time.Millisecond))

	if o.Dispense && !o.Pipeline {
		start = time.Now()
		var next atomic.Int64
		for w := range o.Clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= len(jobs) || ctx.Err() != nil {
						return
					}
					if codes[i] != "" {
						fill(w, &jobs[i], codes[i])
					}
				}
			}()
		}
		wg.Wait()
		rep.Pharmacy = time.Since(start)
		fmt.Fprintf(o.Progress, "claimed, dispensed and closed in %s\n", rep.Pharmacy.Round(time.Millisecond))
	} else if o.Pipeline {
		rep.Pharmacy = rep.Prescribe
	}
	for _, op := range rec.ops {
		slices.Sort(op.lat)
	}
	rep.Ops, rep.Closed, rep.Retried = rec.ops, int(closed.Load()), rec.retried
	return rep, nil
}

// Print writes the report as a table: per operation the answers, the
// refusals by code, the rate over its phase and the latency quantiles.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "%-10s %8s %8s %10s %9s %9s %9s %9s\n", "operation", "ok", "failed", "per second", "p50", "p95", "p99", "max")
	for _, name := range []string{OpConnect, OpPrescribe, OpSession, OpClaim, OpDispense, OpClose} {
		o := r.Ops[name]
		if o == nil {
			continue
		}
		phase := r.Pharmacy
		if name == OpPrescribe {
			phase = r.Prescribe
		}
		rate := "-"
		if name != OpSession && name != OpConnect && phase > 0 {
			rate = fmt.Sprintf("%.0f", float64(o.OK)/phase.Seconds())
		}
		fmt.Fprintf(w, "%-10s %8d %8d %10s %9s %9s %9s %9s\n", name, o.OK, o.Failed(), rate,
			ms(o.Quantile(0.50)), ms(o.Quantile(0.95)), ms(o.Quantile(0.99)), ms(o.Quantile(1)))
		codes := make([]string, 0, len(o.Errors))
		for c := range o.Errors {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		for _, c := range codes {
			fmt.Fprintf(w, "  refused %-28s %d\n", c, o.Errors[c])
		}
	}
	if len(r.Retried) > 0 {
		codes := make([]string, 0, len(r.Retried))
		for c := range r.Retried {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		for _, c := range codes {
			fmt.Fprintf(w, "retried after %-22s %d attempts\n", c, r.Retried[c])
		}
	}
	if r.Pharmacy > 0 {
		fmt.Fprintf(w, "claimed+dispensed+closed: %d prescriptions, %.0f per second\n", r.Closed, float64(r.Closed)/r.Pharmacy.Seconds())
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
