package rules

import (
	"bytes"
	_ "embed"
	"fmt"
)

//go:embed starter/rules.yaml
var starterYAML []byte

// StarterName is the file name problems and logs use for the starter set.
const StarterName = "starter/rules.yaml"

// StarterYAML returns a copy of the embedded starter rule set file, the
// template the insurer's staff start their own sets from.
func StarterYAML() []byte { return bytes.Clone(starterYAML) }

// Starter loads the embedded starter rule set. Each call returns a new
// Set. The file is part of the binary and its tests load it, so a refusal
// here is a build defect, not bad input: Starter panics rather than hand
// a daemon no rules.
func Starter() *Set {
	set, err := Load(StarterName, starterYAML)
	if err != nil {
		panic(fmt.Sprintf("rules: the embedded starter set is refused: %v", err))
	}
	return set
}
