#!/usr/bin/env bash
# Regenerates the test fixtures in keys/ with the real OpenSSH ssh-keygen, and
# records exactly how each file was made. The keys are TEST-ONLY: they are public.
#
#   bash keys/generate.sh        # from the project root; overwrites the fixtures
#
# Tests read these files to prove byte compatibility with OpenSSH, so the fixtures
# must come from ssh-keygen, never from noise-echo itself.
set -euo pipefail
cd "$(dirname "$0")"
command -v ssh-keygen >/dev/null || { echo "ssh-keygen is needed (apt-get install openssh-client)" >&2; exit 1; }

rm -f client_ed25519* host_ed25519_key* passphrase_ed25519* rsa_3072* ecdsa_p256* dsa_1024* security_keys.pub \
      authorized_keys known_hosts known_hosts_hashed ssh-keygen-lf.txt

# Identities: a client and a server host key, unencrypted, as a user would make them.
ssh-keygen -q -t ed25519 -N '' -C 'client@noise-echo-test' -f client_ed25519
ssh-keygen -q -t ed25519 -N '' -C 'host@noise-echo-test' -f host_ed25519_key
# An encrypted identity (bcrypt-pbkdf, aes256-ctr: ssh-keygen's defaults), which
# connect decrypts with its passphrase.
ssh-keygen -q -t ed25519 -N 'correct horse' -C 'passphrase@noise-echo-test' -f passphrase_ed25519
# Keys noise-echo must refuse as identities with a clear error, and fingerprint shows.
ssh-keygen -q -t rsa -b 3072 -N '' -C 'rsa@noise-echo-test' -f rsa_3072
ssh-keygen -q -t ecdsa -b 256 -N '' -C 'ecdsa@noise-echo-test' -f ecdsa_p256
# DSA is gone from newer OpenSSH builds: there the file is simply not made.
ssh-keygen -q -t dsa -N '' -C 'dsa@noise-echo-test' -f dsa_1024 2>/dev/null \
  || echo "this ssh-keygen cannot make DSA keys: dsa_1024 not made" >&2
# Security-key public keys (sk-*): ssh-keygen needs a FIDO device to make them, so
# these two lines were built by hand (random ed25519 bytes, the P-256 generator point,
# application "ssh:"); they are public keys only, and ssh-keygen -lf reads them.
cat > security_keys.pub <<'SK'
sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIKleaOKVN0G2ddmCNcuVGa5CDchfFPJy5yBhRaNgSo7nAAAABHNzaDo= sk@x
sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBGsX0fLhLEJH+Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT+NC4v4af5uO5+tKfA+eFivOM1drMV7Oy7ZAaDe/UfUAAAAEc3NoOg== ske@x
SK
# A user certificate for the client key, signed with the host key as its CA
# (ssh-keygen refuses a CA key that others can read).
chmod 600 host_ed25519_key
ssh-keygen -q -s host_ed25519_key -I client-cert -n client -z 1 client_ed25519.pub

# An authorized_keys file as people share it with sshd: comments, an RSA key
# (skipped with a warning), options, and one malformed line between good ones.
{
  echo "# noise-echo test authorized_keys (made by keys/generate.sh)"
  echo
  cat client_ed25519.pub
  cat rsa_3072.pub
  echo "this line is malformed"
  printf 'from="127.0.0.1,::1",expiry-time="29991231" %s\n' "$(cat host_ed25519_key.pub)"
} > authorized_keys

# known_hosts: a plain entry on a non-default port, and the same file hashed by
# ssh-keygen -H (OpenSSH's HashKnownHosts form, |1|salt|hmac).
{
  echo "# noise-echo test known_hosts (made by keys/generate.sh)"
  printf '[localhost]:1234,[127.0.0.1]:1234 %s\n' "$(cut -d' ' -f1,2 host_ed25519_key.pub)"
  printf 'example.org %s\n' "$(cut -d' ' -f1,2 client_ed25519.pub)"
} > known_hosts
cp known_hosts known_hosts_hashed
ssh-keygen -q -H -f known_hosts_hashed 2>/dev/null
rm -f known_hosts_hashed.old

# Expected fingerprints, as ssh-keygen prints them, for the tests to compare with.
for key in client_ed25519.pub host_ed25519_key.pub; do
  ssh-keygen -lf "$key"
done > fingerprints.txt
# ssh-keygen -lf of every file, for `noise-echo fingerprint` to print the same lines
# (cli/tests/keygen_and_fingerprint.rs); blocks start with "== FILE".
for file in client_ed25519 client_ed25519.pub client_ed25519-cert.pub host_ed25519_key.pub \
            passphrase_ed25519 passphrase_ed25519.pub rsa_3072 rsa_3072.pub \
            ecdsa_p256 ecdsa_p256.pub dsa_1024.pub security_keys.pub authorized_keys known_hosts known_hosts_hashed; do
  [ -e "$file" ] || continue
  echo "== $file"
  ssh-keygen -lf "$file"
done > ssh-keygen-lf.txt
# The OpenSSH that made them.
ssh -V 2>&1 | head -1 > ssh-keygen-version.txt

# --- authorized_keys shared with sshd (issue 10) ---
rm -f latin1_ed25519* forge_user.keys forge_user.keys.lf authorized_keys_sshd authorized_keys_sshd.lf

# A key whose comment is Latin-1, not UTF-8 ("café" with byte e9): sshd ignores
# comment bytes, so noise-echo must accept it.
ssh-keygen -q -t ed25519 -N '' -C "$(printf 'caf\351@latin1')" -f latin1_ed25519

# A forge's https://forge.example/USER.keys: type and base64 only, no comments,
# RSA, ECDSA and ed25519 mixed. authorize adds the ed25519 keys, skips the rest.
for key in rsa_3072.pub client_ed25519.pub ecdsa_p256.pub host_ed25519_key.pub; do
  cut -d' ' -f1,2 "$key"
done > forge_user.keys
ssh-keygen -lf forge_user.keys > forge_user.keys.lf

# authorized_keys as sshd users write it: restrict and no-* flags on most keys
# (accepted), options that grant or change something (not trusted), another key
# type, and the Latin-1 comment.
{
  echo "# sshd's authorized_keys (made by keys/generate.sh)"
  printf 'restrict %s\n' "$(cat client_ed25519.pub)"
  printf 'no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty,no-user-rc %s\n' "$(cat host_ed25519_key.pub)"
  printf 'command="/usr/bin/backup",restrict %s\n' "$(cat passphrase_ed25519.pub)"
  printf 'restrict,pty %s\n' "$(cat latin1_ed25519.pub)"
  cat rsa_3072.pub
  printf 'expiry-time="20200101Z" %s\n' "$(cat latin1_ed25519.pub)"
  cat latin1_ed25519.pub
} > authorized_keys_sshd
ssh-keygen -lf authorized_keys_sshd > authorized_keys_sshd.lf


# --- OpenSSH certificates (issue 13): their own script, so that they can be remade
# without changing the keys above (other fixtures and goldens name their fingerprints).
bash generate-certs.sh
