// Package deb checks the Debian package: `make deb`, lintian, the package's contents and
// control fields, and that the man pages document every configuration key.
package deb
