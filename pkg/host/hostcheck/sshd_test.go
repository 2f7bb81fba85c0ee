package hostcheck

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestReadSSHD(t *testing.T) {
	type file struct{ path, body string }
	const socket = "[Unit]\nDescription=OpenBSD Secure Shell server socket\n\n[Socket]\nListenStream=22\nAccept=yes\n"
	tests := []struct {
		name  string
		files []file
		links []string // enablement symlinks
		want  SSHD
	}{
		{"no sshd", nil, nil, SSHD{}},
		{"service enabled", []file{{"lib/systemd/system/ssh.service", "[Service]\n"}},
			[]string{"etc/systemd/system/multi-user.target.wants/ssh.service"}, SSHD{ServiceEnabled: true}},
		{"alias sshd.service", nil, []string{"etc/systemd/system/multi-user.target.wants/sshd.service"}, SSHD{ServiceEnabled: true}},
		{"socket, packaged port", []file{{"lib/systemd/system/ssh.socket", socket}},
			[]string{"etc/systemd/system/sockets.target.wants/ssh.socket"}, SSHD{SocketEnabled: true, SocketPorts: []uint16{22}}},
		{"socket moved to 2222 by a drop-in", []file{
			{"lib/systemd/system/ssh.socket", socket},
			{"etc/systemd/system/ssh.socket.d/port.conf", "[Socket]\nListenStream=\nListenStream=[::]:2222\nListenStream=0.0.0.0:2223\n"},
		}, []string{"etc/systemd/system/sockets.target.wants/ssh.socket"}, SSHD{SocketEnabled: true, SocketPorts: []uint16{2222, 2223}}},
		{"socket added port, unit file override in /etc", []file{
			{"lib/systemd/system/ssh.socket", socket},
			{"etc/systemd/system/ssh.socket", "[Socket]\nListenStream=2200\n"},
			{"etc/systemd/system/ssh.socket.d/more.conf", "[Socket]\nListenStream=2201\n# ListenStream=9\n[Install]\nListenStream=9\n"},
		}, nil, SSHD{SocketPorts: []uint16{2200, 2201}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(root, f.path)
				must(t, os.MkdirAll(filepath.Dir(p), 0o755))
				must(t, os.WriteFile(p, []byte(f.body), 0o644))
			}
			for _, l := range tt.links {
				p := filepath.Join(root, l)
				must(t, os.MkdirAll(filepath.Dir(p), 0o755))
				must(t, os.Symlink("/lib/systemd/system/"+filepath.Base(l), p))
			}
			if got := ReadSSHD(root); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ReadSSHD = %+v, want %+v", got, tt.want)
			}
		})
	}
}
