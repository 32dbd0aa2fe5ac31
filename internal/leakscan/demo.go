package leakscan

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/nuskha/nuskha/internal/nationalid"
)

// DemoNeedles are the secrets of README.md's walkthrough, read from the
// repository at repo:
//
//   - every national id of the insured registry make run loads
//     (deploy/sample/registry.csv, the persons and their main insured);
//   - from the documents the walkthrough signs and sends
//     (deploy/sample/*.json): every national id, name, birth date, dosage
//     and diagnosis, and each item's code with its names in the catalogue
//     (deploy/sample/drugs.csv, services.csv);
//   - from README.md: the national ids and persons' names of the registry
//     entries it adds (its JSON documents), and the free text it puts into
//     a document (a cancellation's -reason).
//
// Organisations' licence numbers and practitioners' council numbers are
// not needles: they name who acted, which the audit log records by design.
func DemoNeedles(repo string) ([]Needle, error) {
	c := &collector{seen: map[string]bool{}}
	sample := filepath.Join(repo, "deploy", "sample")
	reg, err := readCSV(filepath.Join(sample, "registry.csv"))
	if err != nil {
		return nil, err
	}
	for _, row := range reg {
		for _, col := range []string{"national_id", "main_national_id"} {
			if v := row[col]; v != "" {
				c.id("a national id of the insured registry", v)
			}
		}
	}
	catalogue := map[string][]string{}
	for _, f := range []string{"drugs.csv", "services.csv"} {
		rows, err := readCSV(filepath.Join(sample, f))
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			catalogue[row["code"]] = []string{row["name"], row["name_fa"]}
		}
	}
	docs, err := filepath.Glob(filepath.Join(sample, "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range docs {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		c.document("deploy/sample/"+filepath.Base(f), "", v, catalogue)
	}
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		return nil, err
	}
	for _, m := range heredocJSON.FindAllStringSubmatch(string(readme), -1) {
		var sub map[string]any
		if err := json.Unmarshal([]byte(m[1]), &sub); err != nil {
			return nil, fmt.Errorf("README.md: a JSON document: %w", err)
		}
		if s, ok := sub["national_id"].(string); ok {
			c.id("a registry entry's national id in README.md", s)
		}
		if s, ok := sub["responsible_name"].(string); ok {
			c.text("a responsible pharmacist's name in README.md", s)
		}
		if s, ok := sub["name"].(string); ok && sub["kind"] == "practitioner" {
			c.text("a practitioner's name in README.md", s)
		}
	}
	for _, m := range reasonFlag.FindAllStringSubmatch(string(readme), -1) {
		c.text("a cancellation's reason in README.md", m[1])
	}
	if c.err != nil {
		return nil, c.err
	}
	return c.needles, nil
}

var (
	heredocJSON = regexp.MustCompile(`(?s)<<'JSON'\n(.*?)\nJSON\n`)
	// -reason "free text" (not -reason keyCompromise, a code)
	reasonFlag = regexp.MustCompile(`-reason "([^"]+)"`)
)

type collector struct {
	needles []Needle
	seen    map[string]bool
	err     error
}

func (c *collector) keep(key string, n Needle, err error) {
	if c.err == nil && err != nil {
		c.err = err
	}
	if err == nil && !c.seen[key] {
		c.seen[key] = true
		c.needles = append(c.needles, n)
	}
}

func (c *collector) id(label, v string) {
	id, err := nationalid.Parse(v)
	if err != nil {
		c.keep("", Needle{}, fmt.Errorf("leakscan: %s: %w", label, err))
		return
	}
	n, err := NationalID(label+" ("+mask(id)+")", id)
	c.keep("id:"+id, n, err)
}

func (c *collector) text(label, v string) {
	n, err := Text(label, v)
	c.keep("text:"+v, n, err)
}

func (c *collector) code(label, v string) {
	n, err := Code(label, v)
	c.keep("code:"+v, n, err)
}

// textKeys are the fields of a document whose value is a person's data or
// the prescription's contents.
var textKeys = []string{"name", "dosage", "birth_date", "note", "notes", "instructions", "reason", "diagnoses"}

// document collects the needles of a signed document's JSON.
func (c *collector) document(file, key string, v any, catalogue map[string][]string) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c.document(file, k, v[k], catalogue)
		}
	case []any:
		for _, e := range v {
			c.document(file, key, e, catalogue)
		}
	case string:
		switch {
		case key == "national_id":
			c.id("a national id in "+file, v)
		case key == "code":
			c.code("an item's code in "+file, v)
			for _, name := range catalogue[v] {
				c.text("the catalogue's name of an item in "+file, name)
			}
		case slices.Contains(textKeys, key):
			c.text(fmt.Sprintf("%s in %s", key, file), v)
		}
	}
}

func readCSV(path string) ([]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("%s: no rows", path)
	}
	var out []map[string]string
	for _, r := range rows[1:] {
		m := map[string]string{}
		for i, h := range rows[0] {
			if i < len(r) {
				m[strings.TrimSpace(h)] = strings.TrimSpace(r[i])
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// mask shows the last two digits: a label never carries the value.
func mask(id string) string {
	if len(id) < 2 {
		return "…"
	}
	return "…" + id[len(id)-2:]
}
