// Package stats reads spip's records (journal, journal directory or JSON mirror) and reports what is hitting the host, in bounded memory.
package stats
