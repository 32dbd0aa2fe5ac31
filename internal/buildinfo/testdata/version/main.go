// Command version prints buildinfo.Read as the real commands do; the
// buildinfo tests build it the ways deploy/build.sh and a bare go build do.
package main

import (
	"fmt"

	"github.com/nuskha/nuskha/internal/buildinfo"
)

func main() { fmt.Print(buildinfo.Read().Format("version")) }
