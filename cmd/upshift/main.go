// Command upshift runs rolling upgrades of clustered platforms from HCL
// playbooks. This package is the command line only: parsing flags, loading
// playbooks and rendering output; the work is done by playbooks, runner and
// plugins.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
