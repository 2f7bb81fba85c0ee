package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// TestServeECSMirror runs spip with output.json_format = "ecs" (from the environment, as a unit
// drop-in would set it) and reads its JSON mirror: every line is an ECS document whose every
// field the shipped index template maps, and the connection's facts are in their ECS places.
func TestServeECSMirror(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(netns.Binary(t), "serve", "--config", "/dev/null", "--listen", addr, "--json", "-", "--journald", "off", "--sensor-name", "ecs-test")
	cmd.Env = append(os.Environ(), "SPIP_OUTPUT_JSON_FORMAT=ecs", "SPIP_CAPTURE_MODE=redirect")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var c net.Conn
	for range 100 {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("spip never listened on %s: %v\n%s", addr, err, errb.String())
	}
	src := c.LocalAddr().(*net.TCPAddr)
	if _, err := c.Write([]byte("GET /ecs HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("spip exited with %v\n%s", err, errb.String())
	}

	mapped := templateFields(t)
	actions := map[string]bool{}
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var doc map[string]any
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		for _, name := range leaves("", doc) {
			if !mapped[name] {
				t.Errorf("%s is not mapped by packaging/elastic/index-template.json", name)
			}
		}
		ev, _ := doc["event"].(map[string]any)
		action, _ := ev["action"].(string)
		actions[action] = true
		if action != "connection" {
			continue
		}
		source, _ := doc["source"].(map[string]any)
		own, _ := doc["spip"].(map[string]any)
		observer, _ := doc["observer"].(map[string]any)
		if source["ip"] != "127.0.0.1" || source["port"] != float64(src.Port) || own["payload"] != "GET /ecs HTTP/1.0\r\n\r\n" ||
			observer["name"] != "ecs-test" || ev["id"] == nil || doc["@timestamp"] == nil {
			t.Errorf("connection record: %s", sc.Text())
		}
	}
	for _, a := range []string{"started", "connection", "stopping"} {
		if !actions[a] {
			t.Errorf("no %s record in the ECS mirror:\n%s", a, out.String())
		}
	}
}

// templateFields is the set of field names the shipped index template maps.
func templateFields(t *testing.T) map[string]bool {
	b, err := os.ReadFile(filepath.Join(netns.RepoRoot(), "packaging/elastic/index-template.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tpl struct {
		Template struct {
			Mappings struct {
				Properties map[string]any `json:"properties"`
			} `json:"mappings"`
		} `json:"template"`
	}
	if err := json.Unmarshal(b, &tpl); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	var walk func(prefix string, props map[string]any)
	walk = func(prefix string, props map[string]any) {
		for k, v := range props {
			if sub, ok := v.(map[string]any)["properties"].(map[string]any); ok {
				walk(prefix+k+".", sub)
			} else {
				set[prefix+k] = true
			}
		}
	}
	walk("", tpl.Template.Mappings.Properties)
	return set
}

// leaves lists a document's value fields by their dotted names.
func leaves(prefix string, v any) []string {
	m, ok := v.(map[string]any)
	if !ok {
		return []string{strings.TrimSuffix(prefix, ".")}
	}
	var out []string
	for k, x := range m {
		out = append(out, leaves(prefix+k+".", x)...)
	}
	return out
}
