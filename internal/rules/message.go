package rules

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Messages may name a few Input fields between double braces, e.g.
// "at most {{item.catalogue.max_quantity}} per prescription". The list is
// short on purpose: a message is shown to practitioners and pharmacists,
// and is rendered only when the rule is violated, so it costs nothing on
// the common path. There is no escape: "{{" always opens a placeholder.

type placeholder struct {
	item bool // needs the item: only in per: item rules
	get  func(in *Input, it *Item) string
}

var placeholders = map[string]placeholder{
	"item.code":                       {true, func(_ *Input, it *Item) string { return it.Code }},
	"item.kind":                       {true, func(_ *Input, it *Item) string { return it.Kind }},
	"item.quantity":                   {true, func(_ *Input, it *Item) string { return strconv.Itoa(it.Quantity) }},
	"item.catalogue.generic_name":     {true, func(_ *Input, it *Item) string { return it.Catalogue.GenericName }},
	"item.catalogue.atc":              {true, func(_ *Input, it *Item) string { return it.Catalogue.ATC }},
	"item.catalogue.max_quantity":     {true, func(_ *Input, it *Item) string { return strconv.Itoa(it.Catalogue.MaxQuantity) }},
	"item.catalogue.min_age_years":    {true, func(_ *Input, it *Item) string { return strconv.Itoa(it.Catalogue.MinAgeYears) }},
	"item.catalogue.max_age_years":    {true, func(_ *Input, it *Item) string { return strconv.Itoa(it.Catalogue.MaxAgeYears) }},
	"item.catalogue.sex":              {true, func(_ *Input, it *Item) string { return it.Catalogue.Sex }},
	"item.catalogue.controlled_class": {true, func(_ *Input, it *Item) string { return it.Catalogue.ControlledClass }},
	"item.catalogue.coverage_percent": {true, func(_ *Input, it *Item) string { return strconv.Itoa(it.Catalogue.CoveragePercent) }},
	"prescriber.profession":           {false, func(in *Input, _ *Item) string { return in.Prescriber.Profession }},
	"prescriber.specialty":            {false, func(in *Input, _ *Item) string { return in.Prescriber.Specialty }},
	"prescription.drug_count":         {false, func(in *Input, _ *Item) string { return strconv.Itoa(in.Prescription.DrugCount) }},
	"prescription.item_count":         {false, func(in *Input, _ *Item) string { return strconv.Itoa(in.Prescription.ItemCount) }},
	"prescription.issued_days_ago":    {false, func(in *Input, _ *Item) string { return strconv.Itoa(in.Prescription.IssuedDaysAgo) }},
}

// PlaceholderNames lists the fields a message may name, sorted.
func PlaceholderNames() []string {
	names := make([]string, 0, len(placeholders))
	for n := range placeholders {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// message is a parsed message text: literal text and placeholders.
type message struct {
	parts []messagePart
}

type messagePart struct {
	text string
	get  func(in *Input, it *Item) string // nil for literal text
}

// parseMessage splits s into parts. perItem says whether item
// placeholders are allowed.
func parseMessage(s string, perItem bool) (message, error) {
	var m message
	for {
		open := strings.Index(s, "{{")
		if open < 0 {
			if s != "" {
				m.parts = append(m.parts, messagePart{text: s})
			}
			return m, nil
		}
		if open > 0 {
			m.parts = append(m.parts, messagePart{text: s[:open]})
		}
		rest := s[open+2:]
		end := strings.Index(rest, "}}")
		if end < 0 {
			return message{}, fmt.Errorf("unclosed {{ in the message")
		}
		name := strings.TrimSpace(rest[:end])
		ph, ok := placeholders[name]
		switch {
		case !ok:
			return message{}, fmt.Errorf("unknown placeholder {{%s}} (known: %s)", name, strings.Join(PlaceholderNames(), ", "))
		case ph.item && !perItem:
			return message{}, fmt.Errorf("placeholder {{%s}} needs per: item", name)
		}
		m.parts = append(m.parts, messagePart{get: ph.get})
		s = rest[end+2:]
	}
}

func (m message) render(in *Input, it *Item) string {
	if len(m.parts) == 1 && m.parts[0].get == nil {
		return m.parts[0].text
	}
	var b strings.Builder
	for _, p := range m.parts {
		if p.get != nil {
			b.WriteString(p.get(in, it))
		} else {
			b.WriteString(p.text)
		}
	}
	return b.String()
}
