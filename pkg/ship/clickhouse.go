package ship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrRejected is wrapped by errors that retrying cannot cure: ClickHouse refused the
// credentials, or the database or table does not exist. spip ship exits on them.
var ErrRejected = errors.New("clickhouse rejected the shipper")

// Client speaks ClickHouse's HTTP interface.
type Client struct {
	URL            string // http(s)://host:port, no path or query
	User, Password string
	HTTP           *http.Client
}

// NewClient returns a client with a bounded request time.
func NewClient(u, user, password string) *Client {
	return &Client{URL: strings.TrimRight(u, "/"), User: user, Password: password,
		HTTP: &http.Client{Timeout: 2 * time.Minute}}
}

// Codes of ClickHouse exceptions that mean the shipper is misconfigured, not that the server
// is having a bad moment.
var rejectCodes = map[int]string{
	60:  "the table does not exist (create it: spip ship --schema | clickhouse-client --multiquery)",
	81:  "the database does not exist (create it: spip ship --schema | clickhouse-client --multiquery)",
	164: "the user is read-only",
	192: "unknown user (ship.user)",
	193: "wrong password (the clickhouse-password credential)",
	194: "a password is required (the clickhouse-password credential)",
	497: "access denied (GRANT INSERT to ship.user)",
	516: "authentication failed (ship.user, the clickhouse-password credential)",
}

var codeRe = regexp.MustCompile(`Code: (\d+)`)

// ServerError is an error ClickHouse answered with.
type ServerError struct {
	Status int
	Code   int // ClickHouse's exception code, 0 when none was given
	Text   string
}

func (e *ServerError) Error() string {
	if hint, ok := rejectCodes[e.Code]; ok {
		return fmt.Sprintf("clickhouse: %s: %s", hint, e.Text)
	}
	return fmt.Sprintf("clickhouse: HTTP %d: %s", e.Status, e.Text)
}

// Unwrap makes errors.Is(err, ErrRejected) true for misconfiguration.
func (e *ServerError) Unwrap() error {
	if _, ok := rejectCodes[e.Code]; ok || e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		return ErrRejected
	}
	return nil
}

// Do runs one query; body, when not nil, is the query's data (INSERT … FORMAT).
func (c *Client) Do(ctx context.Context, query string, params url.Values, body []byte) ([]byte, error) {
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	var rd io.Reader
	if body != nil {
		q.Set("query", query)
		rd = bytes.NewReader(body)
	} else {
		rd = strings.NewReader(query)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/?"+q.Encode(), rd)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	if c.User != "" {
		req.SetBasicAuth(c.User, c.Password)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if errors.Is(err, syscall.EPERM) {
			return nil, fmt.Errorf("clickhouse: %w (is the store's address in the unit's IPAddressAllow=?)", err)
		}
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		text := strings.TrimSpace(string(bytes.ToValidUTF8(out[:min(len(out), 1024)], []byte("?"))))
		se := &ServerError{Status: resp.StatusCode, Text: text}
		if m := codeRe.FindStringSubmatch(text); m != nil {
			se.Code, _ = strconv.Atoi(m[1])
		}
		return nil, se
	}
	return out, nil
}

// Insert sends rows (JSONEachRow lines) to db.table. Fields the table lacks are skipped, so a
// newer spip's records still go in (the shipper warns about the columns to add).
func (c *Client) Insert(ctx context.Context, db, tbl string, rows []byte) error {
	_, err := c.Do(ctx, "INSERT INTO "+db+"."+tbl+" FORMAT JSONEachRow",
		url.Values{"input_format_skip_unknown_fields": {"1"}}, rows)
	return err
}

// Columns returns the table's columns and their types.
func (c *Client) Columns(ctx context.Context, db, tbl string) (map[string]string, error) {
	out, err := c.Do(ctx, "DESCRIBE TABLE "+db+"."+tbl+" FORMAT TabSeparated", nil, nil)
	if err != nil {
		return nil, err
	}
	cols := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) >= 2 {
			cols[f[0]] = f[1]
		}
	}
	return cols, nil
}
