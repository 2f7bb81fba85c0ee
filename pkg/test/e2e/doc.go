// Package e2e tests the built spip binary from outside: real nftables redirects and tproxy rules, real sockets, its JSON records.
package e2e
