package http

import (
	"os"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	curl, err := os.ReadFile("testdata/curl_http_ua.bin") // curl 7.88.1 -A 'spip-test/1.0 (e2e)' http://www.example.test:14438/.env
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("A", 2000)
	for _, c := range []struct {
		name string
		in   string
		want Request
		ok   bool
	}{
		{"curl capture", string(curl), Request{Method: "GET", Path: "/.env", Version: "1.1", Host: "www.example.test:14438", UserAgent: "spip-test/1.0 (e2e)"}, true},
		{"minimal", "GET / HTTP/1.0\r\n\r\n", Request{Method: "GET", Path: "/", Version: "1.0"}, true},
		{"bare LF and odd case", "POST /x HTTP/1.1\nhOsT:  h.example \nuser-agent:\tzgrab/0.x\n\n", Request{Method: "POST", Path: "/x", Version: "1.1", Host: "h.example", UserAgent: "zgrab/0.x"}, true},
		{"first Host wins", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Request{Method: "GET", Path: "/", Version: "1.1", Host: "a"}, true},
		{"cut in the target", "GET /cgi-bin/lo", Request{Method: "GET", Path: "/cgi-bin/lo", Cut: CutPath}, true},
		{"cut in the version", "GET /a HTTP/1.", Request{Method: "GET", Path: "/a"}, true},
		{"cut in a header", "GET / HTTP/1.1\r\nUser-Agent: Mozilla/5.0 (Win", Request{Method: "GET", Path: "/", Version: "1.1", UserAgent: "Mozilla/5.0 (Win", Cut: CutUserAgent}, true},
		{"long path", "GET /" + long + " HTTP/1.1\r\n\r\n", Request{Method: "GET", Path: ("/" + long)[:MaxPath], Version: "1.1", Cut: CutPath}, true},
		{"long agent", "GET / HTTP/1.1\r\nUser-Agent: " + long + "\r\n\r\n", Request{Method: "GET", Path: "/", Version: "1.1", UserAgent: long[:MaxUserAgent], Cut: CutUserAgent}, true},
		{"absolute-form proxy probe", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", Request{Method: "CONNECT", Path: "example.com:443", Version: "1.1", Host: "example.com:443"}, true},
		{"HTTP/0.9", "GET /\r\n", Request{Method: "GET", Path: "/"}, true},
		{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Request{Method: "PRI", Path: "*", Version: "2.0"}, true},
		{"unknown method", "FOO / HTTP/1.1\r\n\r\n", Request{}, false},
		{"lower-case method", "get / HTTP/1.1\r\n\r\n", Request{}, false},
		{"method alone", "GET", Request{}, false},
		{"binary", "\x16\x03\x01\x02\x00", Request{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Parse([]byte(c.in))
			if ok != c.ok || got != c.want {
				t.Errorf("Parse = %+v %v, want %+v %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: b\r\n\r\n", "POST /x HTTP/1.0\n\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "GET  HTTP/1.1", "GET \r\n:\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		r, ok := Parse(p)
		if ok != Match(p) {
			t.Fatalf("Parse ok %v, Match %v", ok, Match(p))
		}
		if len(r.Method) > MaxMethod || len(r.Path) > MaxPath || len(r.Version) > MaxVersion || len(r.Host) > MaxHost || len(r.UserAgent) > MaxUserAgent {
			t.Fatalf("unbounded: %+v", r)
		}
		for _, v := range []string{r.Method, r.Path, r.Version, r.Host, r.UserAgent} {
			if strings.Contains(v, "\n") {
				t.Fatalf("newline in %q", v)
			}
		}
	})
}
