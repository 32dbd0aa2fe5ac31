// Package insuredtest generates registry CSV files of any size for tests
// and benchmarks: deterministic, valid, and shaped like the insurer's
// exports (main insureds with dependants, every fund, supplementary
// insurance for some).
package insuredtest

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/nationalid"
)

// NationalID is the i-th generated national id (i < 800 000 000).
func NationalID(i int) string {
	first9 := fmt.Sprintf("%09d", 100000000+i)
	c, err := nationalid.CheckDigit(first9)
	if err != nil {
		panic(err)
	}
	return first9 + string(c)
}

// Header is the CSV header line.
func Header() string { return strings.Join(insured.Columns, ",") + "\n" }

// Row is the i-th generated person as a CSV line. Every fourth person is
// a dependant (spouse or child) of the main insured before it; funds
// rotate; every third main insured has supplementary insurance.
// Contributions cover the 12 Solar Hijri months of 1404 and early 1405,
// so persons are eligible on dates in 1405.
func Row(i int) string {
	funds := insured.Funds
	var b strings.Builder
	b.Grow(220)
	main, rel := "", ""
	fund := funds[(i/4)%len(funds)]
	if i%4 == 3 {
		main = NationalID(i - 3)
		rel = []string{"spouse", "child"}[i%2]
	}
	sex := []string{"female", "male"}[i%2]
	birthYear := 1330 + i%70
	fmt.Fprintf(&b, "%s,INS-%d,%s,%s,%s,1395-01-01,,active,%d-%02d-%02d,%s,", NationalID(i), i, fund, main, rel, birthYear, i%12+1, i%28+1, sex)
	if main == "" && fund != insured.Pensioner {
		for m := 1; m <= 12; m++ {
			fmt.Fprintf(&b, "1404-%02d:30|", m)
		}
		b.WriteString("1405-01:30")
	}
	if main == "" && i%3 == 0 {
		b.WriteString(",دی,gold,1404-01-01,,drug=50000000|lab=20000000|imaging=30000000\n")
	} else {
		b.WriteString(",,,,,\n")
	}
	return b.String()
}

// Write writes a whole file of n persons.
func Write(w io.Writer, n int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := bw.WriteString(Header()); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if _, err := bw.WriteString(Row(i)); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Reader streams a file of n persons without holding it in memory.
func Reader(n int) io.Reader {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(Write(pw, n)) }()
	return pr
}
