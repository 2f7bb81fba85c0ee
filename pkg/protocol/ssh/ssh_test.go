package ssh

import (
	"bufio"
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

// kexinit builds a client binary packet holding a KEXINIT with the given name-lists.
func kexinit(kex, enc, mac, cmp string) []byte {
	pl := append([]byte{msgKexInit}, make([]byte, 16)...)
	for _, l := range []string{kex, "ssh-ed25519", enc, enc, mac, mac, cmp, cmp, "", ""} {
		pl = binary.BigEndian.AppendUint32(pl, uint32(len(l)))
		pl = append(pl, l...)
	}
	pl = append(pl, 0, 0, 0, 0, 0)
	pad := 8 - (len(pl)+5)%8 + 4
	p := binary.BigEndian.AppendUint32(nil, uint32(1+len(pl)+pad))
	p = append(p, byte(pad))
	p = append(p, pl...)
	return append(p, make([]byte, pad)...)
}

func TestCaptured(t *testing.T) {
	raw, err := os.ReadFile("testdata/ssh_openssh.bin")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	f, _ := os.Open("testdata/ssh_openssh.hassh.txt")
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(sc.Text(), "#") {
			want[k] = v
		}
	}
	c, ok := Parse(raw)
	if !ok || c.Banner != want["banner"] || c.HASSH != want["hassh"] || c.BannerCut {
		t.Errorf("Parse = %+v %v, want %v", c, ok, want)
	}
	only, _ := os.ReadFile("testdata/ssh_banner_only.bin") // the same client against a silent server
	if c, ok := Parse(only); !ok || c.Banner != want["banner"] || c.HASSH != "" {
		t.Errorf("banner only: %+v", c)
	}
	// Every cut of the capture: a banner (cut while its end is missing), never a HASSH from a part.
	for n := 4; n < len(raw); n++ {
		c, ok := Parse(raw[:n])
		if !ok || c.HASSH != "" {
			t.Fatalf("cut at %d: %+v", n, c)
		}
		if c.BannerCut != (n < len(want["banner"])+2) {
			t.Fatalf("cut at %d: BannerCut %v", n, c.BannerCut)
		}
	}
}

func TestHASSH(t *testing.T) {
	// salesforce/hassh README, "Example 1": the Cyberduck 6.7.1 client's lists give 8a8ae540028bf433cd68356c1b9e8d5b.
	kex := "curve25519-sha256@libssh.org,diffie-hellman-group-exchange-sha256,ecdh-sha2-nistp521,ecdh-sha2-nistp384,ecdh-sha2-nistp256,diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,diffie-hellman-group14-sha256,diffie-hellman-group15-sha512,diffie-hellman-group16-sha512,diffie-hellman-group17-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256@ssh.com,diffie-hellman-group15-sha256,diffie-hellman-group15-sha256@ssh.com,diffie-hellman-group15-sha384@ssh.com,diffie-hellman-group16-sha256,diffie-hellman-group16-sha384@ssh.com,diffie-hellman-group16-sha512@ssh.com,diffie-hellman-group18-sha512@ssh.com"
	enc := "aes128-cbc,aes128-ctr,aes192-cbc,aes192-ctr,aes256-cbc,aes256-ctr,blowfish-cbc,blowfish-ctr,cast128-cbc,cast128-ctr,idea-cbc,idea-ctr,serpent128-cbc,serpent128-ctr,serpent192-cbc,serpent192-ctr,serpent256-cbc,serpent256-ctr,3des-cbc,3des-ctr,twofish128-cbc,twofish128-ctr,twofish192-cbc,twofish192-ctr,twofish256-cbc,twofish256-ctr,twofish-cbc,arcfour,arcfour128,arcfour256"
	mac := "hmac-sha1,hmac-sha1-96,hmac-md5,hmac-md5-96,hmac-sha2-256,hmac-sha2-512"
	cmp := "zlib@openssh.com,zlib,none"
	p := append([]byte("SSH-2.0-Cyberduck/6.7.1.28683 (Mac OS X/10.13.6) (x86_64)\r\n"), kexinit(kex, enc, mac, cmp)...)
	c, ok := Parse(p)
	if !ok || c.HASSH != "8a8ae540028bf433cd68356c1b9e8d5b" || c.Banner != "SSH-2.0-Cyberduck/6.7.1.28683 (Mac OS X/10.13.6) (x86_64)" {
		t.Errorf("Parse = %+v", c)
	}
}

func TestHostile(t *testing.T) {
	k := kexinit("a", "b", "c", "d")
	bad := append([]byte{}, k...)
	binary.BigEndian.PutUint32(bad[4+1+17:], 1<<31) // a name-list length past the packet
	huge := append([]byte{}, k...)
	binary.BigEndian.PutUint32(huge, 1<<30)
	long := "SSH-2.0-" + strings.Repeat("x", 400) + "\r\n"
	for _, c := range []struct {
		name string
		in   string
		want Client
		ok   bool
	}{
		{"name-list past the packet", "SSH-2.0-x\r\n" + string(bad), Client{Banner: "SSH-2.0-x"}, true},
		{"packet length past the bytes", "SSH-2.0-x\r\n" + string(huge), Client{Banner: "SSH-2.0-x"}, true},
		{"not KEXINIT", "SSH-2.0-x\r\n\x00\x00\x00\x0c\x0a\x15" + strings.Repeat("\x00", 10), Client{Banner: "SSH-2.0-x"}, true},
		{"bare LF", "SSH-1.99-old\n", Client{Banner: "SSH-1.99-old"}, true},
		{"long banner", long, Client{Banner: long[:MaxBanner], BannerCut: true}, true},
		{"escape bytes kept raw for the encoders", "SSH-2.0-\x1b[31m\r\n", Client{Banner: "SSH-2.0-\x1b[31m"}, true},
		{"not ssh", "SSH ", Client{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Parse([]byte(c.in))
			if ok != c.ok || got != c.want {
				t.Errorf("Parse = %+v %v, want %+v", got, ok, c.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	raw, _ := os.ReadFile("testdata/ssh_openssh.bin")
	f.Add(raw)
	f.Add(append([]byte("SSH-2.0-x\r\n"), kexinit("a", "b", "c", "d")...))
	f.Add([]byte("SSH-2.0-x\n\x00\x00\x00\x10\x04"))
	f.Fuzz(func(t *testing.T, p []byte) {
		c, ok := Parse(p)
		if ok != Match(p) || len(c.Banner) > MaxBanner || strings.Contains(c.Banner, "\n") {
			t.Fatalf("%+v %v", c, ok)
		}
		if c.HASSH != "" && len(c.HASSH) != 32 {
			t.Fatalf("HASSH %q", c.HASSH)
		}
	})
}
