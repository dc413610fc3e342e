#!/usr/bin/env bash
# Makes a test set of certificates for guard respond's mutual-TLS Falco intake (openssl):
#   ca.pem ca.key          the CA that signs the server and the senders
#   server.pem server.key  for guard respond --tls-cert/--tls-key (SAN: localhost, 127.0.0.1,
#                          ::1 and any extra names given with -n)
#   client.pem client.key  for a sender (Falco's http_output client_cert/client_key,
#                          Falcosidekick's mutual TLS client files)
# guard respond --client-ca ca.pem accepts only clients signed by this CA. EC P-256 keys,
# valid 30 days: a test set, not a PKI (keys are written unencrypted, mode 0600).
set -euo pipefail

usage() {
    cat <<USAGE
usage: $0 [-n DNS_OR_IP]... DIR
  DIR  where to write the files (created; existing files are overwritten)
  -n   an extra subjectAltName for the server certificate (a DNS name or an IP address)
USAGE
}

extra=()
while getopts "n:h" o; do
    case "$o" in
    n) extra+=("$OPTARG") ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || { usage >&2; exit 2; }
dir="$1"
command -v openssl >/dev/null || { echo "$0: openssl not found (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
umask 077

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for n in "${extra[@]}"; do
    if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then san+=",IP:$n"; else san+=",DNS:$n"; fi
done

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key "$dir/ca.key"
openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 30 -subj "/CN=guard intake test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem" 2>/dev/null

# sign NAME CN EXTENSIONS
sign() {
    local name="$1" cn="$2" ext="$3"
    key "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/CN=$cn" -out "$dir/$name.csr" 2>/dev/null
    printf '%b' "$ext" >"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 30 -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}
sign server "guard intake" "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=$san\n"
sign client "falco" "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
rm -f "$dir/ca.srl"
chmod 0644 "$dir"/*.pem
echo "wrote $dir/{ca,server,client}.{pem,key} (server SAN: $san)"
