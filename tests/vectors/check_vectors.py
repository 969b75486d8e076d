#!/usr/bin/env python3
"""Independent check of tests/vectors/v1.txt, written from wire-v1 and the Noise
specification (revision 34) alone: no Noise library, only hashlib and the
`cryptography` package's X25519, Ed25519 and ChaCha20-Poly1305 primitives.

Usage: python3 tests/vectors/check_vectors.py [tests/vectors/v1.txt]
Exits non-zero, naming the first mismatching vector, when the file disagrees.
"""
import hashlib
import hmac
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

P = 2**255 - 19


def load(path):
    vectors = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            vectors[name.strip()] = bytes.fromhex(value.strip())
    return vectors


def x25519(private, public):
    return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))


def x25519_public(private):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_to_x25519(seed):
    """libsodium's crypto_sign_ed25519_{sk,pk}_to_curve25519."""
    ed_public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    y = int.from_bytes(ed_public, "little") & (2**255 - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return ed_public, hashlib.sha512(seed).digest()[:32], u.to_bytes(32, "little")


def hkdf(chaining_key, ikm, outputs):
    temp = hmac.new(chaining_key, ikm, hashlib.blake2s).digest()
    out, previous = [], b""
    for index in range(1, outputs + 1):
        previous = hmac.new(temp, previous + bytes([index]), hashlib.blake2s).digest()
        out.append(previous)
    return out


class Symmetric:
    def __init__(self, name, prologue):
        self.h = name.ljust(32, b"\0") if len(name) <= 32 else hashlib.blake2s(name).digest()
        self.ck, self.k, self.n = self.h, None, 0
        self.mix_hash(prologue)

    def mix_hash(self, data):
        self.h = hashlib.blake2s(self.h + data).digest()

    def mix_key(self, ikm):
        self.ck, self.k = hkdf(self.ck, ikm, 2)
        self.n = 0

    def encrypt_and_hash(self, plaintext):
        if self.k is None:
            out = plaintext
        else:
            out = ChaCha20Poly1305(self.k).encrypt(nonce(self.n), plaintext, self.h)
            self.n += 1
        self.mix_hash(out)
        return out


def nonce(n):
    return b"\0" * 4 + n.to_bytes(8, "little")


def frame(message):
    return len(message).to_bytes(2, "big") + message


def main(path):
    v = load(path)
    checks = {"protocol_name": b"Noise_XX_25519_ChaChaPoly_BLAKE2s", "prologue": b"noise-echo/1"}
    for side in ("client", "server"):
        ed_public, x_private, x_public = ed25519_to_x25519(v[f"{side}_ed25519_seed"])
        checks[f"{side}_ed25519_public"] = ed_public
        checks[f"{side}_x25519_private"] = x_private
        checks[f"{side}_x25519_public"] = x_public
        checks[f"{side}_ephemeral_public"] = x25519_public(v[f"{side}_ephemeral_private"])
        # The derived private key must give the derived public key.
        assert x25519_public(x_private) == x_public, side

    ie, re = v["client_ephemeral_private"], v["server_ephemeral_private"]
    ie_pub, re_pub = checks["client_ephemeral_public"], checks["server_ephemeral_public"]
    i_s, r_s = checks["client_x25519_private"], checks["server_x25519_private"]
    state = Symmetric(checks["protocol_name"], checks["prologue"])
    # -> e
    state.mix_hash(ie_pub)
    msg1 = ie_pub + state.encrypt_and_hash(b"")
    # <- e, ee, s, es   (payload: the server's Ed25519 key)
    state.mix_hash(re_pub)
    state.mix_key(x25519(ie, re_pub))
    msg2 = re_pub + state.encrypt_and_hash(checks["server_x25519_public"])
    state.mix_key(x25519(ie, checks["server_x25519_public"]))
    msg2 += state.encrypt_and_hash(checks["server_ed25519_public"])
    # -> s, se          (payload: the client's Ed25519 key)
    msg3 = state.encrypt_and_hash(checks["client_x25519_public"])
    state.mix_key(x25519(i_s, re_pub))
    msg3 += state.encrypt_and_hash(checks["client_ed25519_public"])
    assert x25519(r_s, ie_pub) == x25519(ie, checks["server_x25519_public"])
    k_client, k_server = hkdf(state.ck, b"", 2)

    checks.update(msg1=frame(msg1), msg2=frame(msg2), msg3=frame(msg3), handshake_hash=state.h)
    request = bytes([1]) + (5).to_bytes(4, "big") + b"hello"
    response = bytes([2]) + (5).to_bytes(4, "big") + b"HELLO"
    checks["client_request_hello"] = frame(ChaCha20Poly1305(k_client).encrypt(nonce(0), request, b""))
    checks["server_response_hello"] = frame(ChaCha20Poly1305(k_server).encrypt(nonce(0), response, b""))

    for name, expected in checks.items():
        if v.get(name) != expected:
            sys.exit(f"MISMATCH {name}: file {v.get(name, b'').hex()} independent {expected.hex()}")
    missing = set(v) - set(checks) - {"client_ed25519_seed", "server_ed25519_seed",
                                      "client_ephemeral_private", "server_ephemeral_private"}
    if missing:
        sys.exit(f"unchecked vectors: {sorted(missing)}")
    print(f"all {len(v)} vectors agree with the independent implementation")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("v1.txt"))
