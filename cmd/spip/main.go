// Command spip is an internet sensor: it records every inbound TCP connection with its original
// destination and what the peer sent. See spip(8).
package main

import (
	"os"

	"github.com/google/uuid"

	"spip/pkg/cli"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	// Session ids come from a pool of random bytes: one getrandom per 16 ids, not one per id. A
	// process-wide setting, so it is made here where the process starts.
	uuid.EnableRandPool()
	os.Exit(cli.Main(os.Args[1:], version))
}
