#!/usr/bin/env bash
# Makes keys/certs/ with the real OpenSSH ssh-keygen, from the committed
# client_ed25519.pub and host_ed25519_key.pub (keys/generate.sh calls it after making
# those). TEST-ONLY keys: the CA private keys are public.
#
#   bash keys/generate-certs.sh         # makes only the fixtures that are missing
#   bash keys/generate-certs.sh --all   # deletes keys/certs/ and makes everything anew
#
# Certificates carry a random nonce and the CAs are random keys, so a fixture made
# again differs byte for byte: the default run keeps what exists (the tests and
# ssh-keygen-L.txt refer to it) and adds the fixtures added to this script since.
set -euo pipefail
cd "$(dirname "$0")"
# -V dates and ssh-keygen -L times are local time: pin it, so the tests can read UTC.
export TZ=UTC
command -v ssh-keygen >/dev/null || { echo "ssh-keygen is needed (apt-get install openssh-client)" >&2; exit 1; }

# A user CA and a host CA, and certificates as `ssh-keygen -s` makes them, one per
# case the validator must decide. Validity windows are fixed far in the past or the
# future (or always:forever) so that no test depends on today's date. Each subject
# key is a copy of client_ed25519.pub (the host certificate: host_ed25519_key.pub),
# so the certificate's key is one the tests hold the private half of.
if [ "${1:-}" = --all ]; then rm -rf certs; fi
mkdir -p certs
for ca in user host; do
  [ -e "certs/${ca}_ca" ] || ssh-keygen -q -t ed25519 -N '' -C "$ca-ca@noise-echo-test" -f "certs/${ca}_ca"
  # git keeps these 0644; ssh-keygen signs only with a private key its owner alone reads.
  chmod 600 "certs/${ca}_ca"
done
# cert SUBJECT NAME [ssh-keygen -s options...]: certs/NAME-cert.pub for the key
# SUBJECT.pub, unless it exists.
cert() {
  local subject=$1 name=$2; shift 2
  [ -e "certs/$name-cert.pub" ] && return
  cp "$subject.pub" "certs/$name.pub"
  ssh-keygen -q "$@" "certs/$name.pub"
  rm "certs/$name.pub"
}
# user_cert NAME [ssh-keygen -s options...]: a certificate for client_ed25519.
user_cert() { cert client_ed25519 "$@"; }
# host_cert NAME [ssh-keygen -s options...]: a certificate for host_ed25519_key.
host_cert() { cert host_ed25519_key "$@"; }
user_cert valid            -s certs/user_ca -I alice-valid -n alice,bob -z 1 -V always:forever
user_cert valid_window     -s certs/user_ca -I alice-window -n alice,bob -z 2 -V 20200101:21000101
user_cert expired          -s certs/user_ca -I alice-expired -n alice,bob -z 3 -V 20200101:20210101
user_cert not_yet_valid    -s certs/user_ca -I alice-future -n alice,bob -z 4 -V 20990101:21000101
user_cert wrong_principal  -s certs/user_ca -I carol -n carol -z 5 -V always:forever
user_cert no_principals    -s certs/user_ca -I anyone -z 6 -V always:forever
user_cert host_type        -s certs/user_ca -I alice-as-host -n alice -z 7 -h -V always:forever
user_cert unknown_critical -s certs/user_ca -I alice-unknown -n alice -z 8 -V always:forever \
                           -O critical:unknown-option@noise-echo.test=yes
user_cert force_command    -s certs/user_ca -I alice-command -n alice -z 9 -V always:forever \
                           -O force-command=/bin/true
user_cert source_address   -s certs/user_ca -I alice-from-5 -n alice -z 10 -V always:forever \
                           -O source-address=127.0.0.5/32
user_cert source_networks  -s certs/user_ca -I alice-from-nets -n alice -z 11 -V always:forever \
                           -O source-address=10.0.0.0/8,::1/128
user_cert other_ca         -s certs/host_ca -I alice-other-ca -n alice -z 12 -V always:forever
# Host certificates for the host key, from the host CA unless named: the valid one
# (what `serve` presents in the tests), then one per case the client must refuse.
host_cert host                 -s certs/host_ca -I host-localhost -h -n localhost,127.0.0.1 -z 100 -V always:forever
host_cert host_expired         -s certs/host_ca -I host-expired -h -n localhost,127.0.0.1 -z 101 -V 20200101:20210101
host_cert host_not_yet_valid   -s certs/host_ca -I host-future -h -n localhost,127.0.0.1 -z 102 -V 20990101:21000101
host_cert host_wrong_principal -s certs/host_ca -I host-elsewhere -h -n other.example -z 103 -V always:forever
host_cert host_user_type       -s certs/host_ca -I host-as-user -n localhost,127.0.0.1 -z 104 -V always:forever
host_cert host_other_ca        -s certs/user_ca -I host-other-ca -h -n localhost,127.0.0.1 -z 105 -V always:forever
host_cert host_no_principals   -s certs/host_ca -I host-anywhere -h -z 106 -V always:forever
host_cert host_critical        -s certs/host_ca -I host-critical -h -n localhost,127.0.0.1 -z 107 -V always:forever \
                               -O critical:unknown-option@noise-echo.test=yes
# A second host key with a certificate from the same CA: a host whose key was
# rotated, which the client must still trust without "REMOTE HOST IDENTIFICATION HAS
# CHANGED" (cli/tests/client_certificates.rs).
[ -e certs/host_rotated_key ] || ssh-keygen -q -t ed25519 -N '' -C 'host-rotated@noise-echo-test' -f certs/host_rotated_key
cert certs/host_rotated_key host_rotated -s certs/host_ca -I host-rotated -h -n localhost,127.0.0.1 -z 108 -V always:forever
# ssh-keygen -L of every certificate, for the listing to be compared with; blocks
# start with "== FILE".
for cert in certs/*-cert.pub; do
  echo "== ${cert#certs/}"
  ssh-keygen -Lf "$cert" | sed 1d
done > certs/ssh-keygen-L.txt

# ---- Revocation (helper "revoke"): KRLs made by ssh-keygen -k and a text revoked-keys
# file, in certs/krl/, from the certificates above. Each revokes one thing, so a test
# can check that exactly the intended keys and certificates are revoked (the
# certificates' serials and key IDs are those given to user_cert above).
# `ssh-keygen -Q -f certs/krl/FILE.krl KEY...` shows what each one revokes.
# The KRLs revoke a user key made here at random, and the tests name what each one
# revokes: made again they would differ, so an existing certs/krl/ is kept (--all
# has removed it with the rest).
if [ -e certs/krl ]; then
  echo "certs/krl/ kept (bash keys/generate-certs.sh --all remakes it)" >&2
  exit 0
fi
mkdir certs/krl
# A user key of its own, with a user CA certificate, for the text list to revoke.
# (chmod: git keeps no file modes, and ssh-keygen refuses a CA key others can read,
# so this block can also be run alone on a checkout.)
chmod 600 certs/user_ca
ssh-keygen -q -t ed25519 -N '' -C 'revoked-user@noise-echo-test' -f certs/krl/revoked_user
ssh-keygen -q -s certs/user_ca -I revoked-user -n alice -z 50 -V always:forever certs/krl/revoked_user.pub
rm certs/krl/revoked_user  # only its public key and certificate are needed
# krl NAME SPEC [ssh-keygen -k options...]: certs/krl/NAME.krl from the spec lines.
krl() {
  local name=$1 spec=$2; shift 2
  printf '%s\n' "$spec" > "certs/krl/$name.spec"
  ssh-keygen -q -k -z 1 -f "certs/krl/$name.krl" "$@" "certs/krl/$name.spec"
  rm "certs/krl/$name.spec"
}
# The key itself (an explicit key section): client_ed25519 and every certificate of it.
krl key "key: $(cat client_ed25519.pub)"
# One serial (valid-cert.pub); serials 5 to 12 of the user CA (not the host CA's
# other_ca-cert.pub, serial 12 too, nor host-cert.pub, serial 100), which ssh-keygen
# writes as a bitmap, and 100 to 100000 as a range section; serials 1,3,5,7,9 (a
# bitmap section).
krl serial 'serial: 1' -s certs/user_ca.pub
krl serial_range "$(printf 'serial: %s\n' 5-12 100-100000)" -s certs/user_ca.pub
krl serial_bitmap "$(printf 'serial: %s\n' 1 3 5 7 9)" -s certs/user_ca.pub
# A key ID under the user CA (expired-cert.pub), and one under any CA (host-cert.pub).
krl key_id 'id: alice-expired' -s certs/user_ca.pub
krl key_id_any_ca 'id: host-localhost' -s none
# The user CA key: every certificate it signed.
krl ca "key: $(cat certs/user_ca.pub)"
# By SHA-256 fingerprint (`hash:`): the host key, so also host-cert.pub; by SHA-1 of
# the host CA key (`sha1:`): other_ca-cert.pub and host-cert.pub.
krl sha256 "hash: $(ssh-keygen -lf host_ed25519_key.pub | cut -d' ' -f2)"
krl sha1 "sha1: $(cat certs/host_ca.pub)"
# A text revoked-keys file as sshd reads one: the host CA (so other_ca-cert.pub and
# host-cert.pub), revoked_user by its certificate (so the key and its certificate),
# an RSA key (counted, revokes none of ours), comments, and a malformed line (reported
# with its line number; the rest still revokes).
{
  echo '# Revoked keys and certificates, one per line, as sshd'"'"'s RevokedKeys reads them.'
  echo
  cat certs/host_ca.pub
  cat certs/krl/revoked_user-cert.pub
  cat rsa_3072.pub
  echo 'ssh-ed25519 this-is-not-base64 broken line'
} > certs/krl/revoked_keys
