// Package flood holds the hostile-input tests: idle floods, overload, the per-source budget and fd exhaustion.
package flood
