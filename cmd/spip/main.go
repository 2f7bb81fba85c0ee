// Command spip is an internet sensor: it records every inbound TCP connection with its original
// destination and what the peer sent. See spip(8).
package main

import (
	"os"

	"spip/pkg/cli"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(cli.Main(os.Args[1:], version))
}
