#!/bin/sh
# make-certs.sh — a small certificate authority for a spip fleet: one CA, one server
# certificate for the collector (systemd-journal-remote) and one client certificate per sensor
# (systemd-journal-upload). Run it on a trusted machine, in an empty directory:
#
#   sh make-certs.sh COLLECTOR_NAME SENSOR_NAME...
#
# COLLECTOR_NAME is the DNS name (or IP address) the sensors put in URL=; each SENSOR_NAME
# becomes the CN of that sensor's certificate. Running it again adds certificates for new
# names with the same CA and keeps what exists.
#
# Writes ca.pem (public: goes to every machine) and ca.key (keep it offline), then NAME.pem
# and NAME.key for the collector and every sensor. Needs openssl. Keys are RSA 3072, the
# certificates last 825 days for servers and sensors and 10 years for the CA.
set -eu
umask 077

if [ $# -lt 2 ]; then
	echo "usage: $0 COLLECTOR_NAME SENSOR_NAME..." >&2
	exit 2
fi
collector=$1
shift

if [ ! -f ca.key ]; then
	openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out ca.key
	openssl req -x509 -key ca.key -days 3650 -sha256 -out ca.pem -subj "/CN=spip fleet CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign"
fi

# leaf NAME SAN EKU: a key and a certificate signed by the CA.
leaf() {
	[ -f "$1.pem" ] && return 0
	openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$1.key"
	openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1"
	printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
		"$3" "$2" >"$1.ext"
	# openssl x509 reports success on stderr too: show it only when it failed.
	out=$(openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
		-days 825 -sha256 -extfile "$1.ext" -out "$1.pem" 2>&1) || { echo "$out" >&2; exit 1; }
	rm -f "$1.csr" "$1.ext"
}

# The collector's name may be an address; curl checks it against the certificate's SAN.
case $collector in
*[!0-9.]* | '') case $collector in *:*) san="IP:$collector" ;; *) san="DNS:$collector" ;; esac ;;
*) san="IP:$collector" ;;
esac
leaf "$collector" "$san" serverAuth
for sensor in "$@"; do
	leaf "$sensor" "DNS:$sensor" clientAuth
done
chmod 0644 ca.pem ./*.pem
echo "made: ca.pem ca.key $collector.pem $collector.key$(for s in "$@"; do printf ' %s.pem %s.key' "$s" "$s"; done)"
