#!/usr/bin/env python3
"""Independent check of the golden vectors in tests/vectors/, written from
docs/PROTOCOL.md and the Noise specification (revision 34) alone: no Noise library,
no Rust, only hashlib and the `cryptography` package's X25519, Ed25519,
ChaCha20-Poly1305 and AES-GCM primitives.

Usage: python3 tests/vectors/check_vectors.py [FILE...]
With no FILE it checks v1.txt, v2-chachapoly.txt and v2-aesgcm.txt beside this
script; the file name says which protocol it records (v1 or v2). Every value is
recomputed from the seeds and fixed ephemeral keys (the only inputs taken from a
file) and the session script below. For v2 it also checks that altering any byte
of the offer makes message 2 fail to open (the downgrade protection of
docs/PROTOCOL.md section 14). Exits non-zero, naming the first mismatching vector,
when a file disagrees or holds a vector this script does not recompute.
"""
import hashlib
import hmac
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

P = 2**255 - 19
INPUTS = {"client_ed25519_seed", "server_ed25519_seed",
          "client_ephemeral_private", "server_ephemeral_private"}


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
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_to_x25519(seed):
    """libsodium's crypto_sign_ed25519_{sk,pk}_to_curve25519."""
    # public_bytes(Raw, Raw) rather than public_bytes_raw(): the latter needs
    # cryptography 40, and Debian 12 ships 38.
    ed_public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    y = int.from_bytes(ed_public, "little") & (2**255 - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return ed_public, hashlib.sha512(seed).digest()[:32], u.to_bytes(32, "little")


class Suite:
    """A Noise protocol's cipher and hash functions (Noise spec 12.3 to 12.6)."""

    def __init__(self, name, hash_function, aead, nonce_byteorder):
        self.name = name
        self.hash = hash_function
        self.aead = aead
        self.byteorder = nonce_byteorder

    def decrypt(self, key, counter, ad, ciphertext):
        return self.aead(key).decrypt(b"\0" * 4 + counter.to_bytes(8, self.byteorder), ciphertext, ad)

    def encrypt(self, key, counter, ad, plaintext):
        # ChaChaPoly: 32 zero bits then the counter little-endian; AESGCM: big-endian.
        return self.aead(key).encrypt(b"\0" * 4 + counter.to_bytes(8, self.byteorder), plaintext, ad)

    def rekey(self, key):
        """Noise Rekey(): the first 32 bytes of ENCRYPT(k, 2^64 - 1, "", 32 zero bytes)."""
        return self.encrypt(key, 2**64 - 1, b"", b"\0" * 32)[:32]

    def hkdf(self, chaining_key, ikm, outputs):
        temp = hmac.new(chaining_key, ikm, self.hash).digest()
        out, previous = [], b""
        for index in range(1, outputs + 1):
            previous = hmac.new(temp, previous + bytes([index]), self.hash).digest()
            out.append(previous)
        return out


SUITES = {
    "chachapoly": Suite(b"Noise_XX_25519_ChaChaPoly_BLAKE2s", hashlib.blake2s, ChaCha20Poly1305, "little"),
    "aesgcm": Suite(b"Noise_XX_25519_AESGCM_SHA256", hashlib.sha256, AESGCM, "big"),
}


class Symmetric:
    """Noise's SymmetricState (spec 5.2), for a 32-byte hash."""

    def __init__(self, suite, prologue):
        self.suite = suite
        name = suite.name
        self.h = name.ljust(32, b"\0") if len(name) <= 32 else suite.hash(name).digest()
        self.ck, self.k, self.n = self.h, None, 0
        self.mix_hash(prologue)

    def mix_hash(self, data):
        self.h = self.suite.hash(self.h + data).digest()

    def mix_key(self, ikm):
        self.ck, self.k = self.suite.hkdf(self.ck, ikm, 2)
        self.n = 0

    def encrypt_and_hash(self, plaintext):
        if self.k is None:
            out = plaintext
        else:
            out = self.suite.encrypt(self.k, self.n, self.h, plaintext)
            self.n += 1
        self.mix_hash(out)
        return out


def opens_message2(v, checks, suite, prologue, msg2):
    """Whether a client whose prologue is `prologue` can open message 2's first
    encrypted field (the server's static key): the downgrade check of section 14."""
    state = Symmetric(suite, prologue)
    state.mix_hash(checks["client_ephemeral_public"])
    state.encrypt_and_hash(b"")
    state.mix_hash(msg2[:32])
    state.mix_key(x25519(v["client_ephemeral_private"], msg2[:32]))
    try:
        suite.decrypt(state.k, 0, state.h, msg2[32:80])
        return True
    except InvalidTag:
        return False


def frame(message):
    assert 1 <= len(message) <= 65535
    return len(message).to_bytes(2, "big") + message


def identities(v, checks):
    for side in ("client", "server"):
        ed_public, x_private, x_public = ed25519_to_x25519(v[f"{side}_ed25519_seed"])
        checks[f"{side}_ed25519_public"] = ed_public
        checks[f"{side}_x25519_private"] = x_private
        checks[f"{side}_x25519_public"] = x_public
        checks[f"{side}_ephemeral_public"] = x25519_public(v[f"{side}_ephemeral_private"])
        # The derived private key must give the derived public key.
        assert x25519_public(x_private) == x_public, side


def handshake(v, checks, suite, prologue, server_payload, client_payload):
    """Noise XX: returns (msg1, msg2, msg3, handshake hash, client key, server key)."""
    ie, re = v["client_ephemeral_private"], v["server_ephemeral_private"]
    ie_pub, re_pub = checks["client_ephemeral_public"], checks["server_ephemeral_public"]
    i_s, r_s = checks["client_x25519_private"], checks["server_x25519_private"]
    state = Symmetric(suite, prologue)
    # -> e
    state.mix_hash(ie_pub)
    msg1 = ie_pub + state.encrypt_and_hash(b"")
    # <- e, ee, s, es
    state.mix_hash(re_pub)
    state.mix_key(x25519(ie, re_pub))
    msg2 = re_pub + state.encrypt_and_hash(checks["server_x25519_public"])
    state.mix_key(x25519(ie, checks["server_x25519_public"]))
    msg2 += state.encrypt_and_hash(server_payload)
    # -> s, se
    msg3 = state.encrypt_and_hash(checks["client_x25519_public"])
    state.mix_key(x25519(i_s, re_pub))
    msg3 += state.encrypt_and_hash(client_payload)
    # The responder computes the same DHs from its side.
    assert x25519(r_s, ie_pub) == x25519(ie, checks["server_x25519_public"])
    assert x25519(re, checks["client_x25519_public"]) == x25519(i_s, re_pub)
    client_key, server_key = suite.hkdf(state.ck, b"", 2)
    return msg1, msg2, msg3, state.h, client_key, server_key


def record(record_type, body):
    return bytes([record_type]) + len(body).to_bytes(4, "big") + body


REQUEST, RESPONSE, ERROR, REKEY = 1, 2, 3, 4


def check_v1(v):
    suite = SUITES["chachapoly"]
    checks = {"protocol_name": suite.name, "prologue": b"noise-echo/1"}
    identities(v, checks)
    msg1, msg2, msg3, h, k_client, k_server = handshake(
        v, checks, suite, checks["prologue"], checks["server_ed25519_public"], checks["client_ed25519_public"])
    checks.update(msg1=frame(msg1), msg2=frame(msg2), msg3=frame(msg3), handshake_hash=h)
    checks["client_request_hello"] = frame(suite.encrypt(k_client, 0, b"", record(REQUEST, b"hello")))
    checks["server_response_hello"] = frame(suite.encrypt(k_server, 0, b"", record(RESPONSE, b"HELLO")))
    return checks


# --- protocol v2 (docs/PROTOCOL.md, "Protocol v2") ---------------------------------

MAGIC = b"noise-echo"
ACCEPT, UNSUPPORTED_SUITE, UNSUPPORTED_VERSION, RETRY_REFUSED = 0, 1, 2, 3
IDENTITY_ED25519, MAX_REQUEST, REKEY_POLICY = 0x8001, 0x0002, 0x0003
MAX_V2_PAYLOAD = 4096

# The session the v2 files record. The server advertises the default request
# limit and a tiny rekey policy, so that both rules (messages and bytes) fire within
# a few messages; the time rule never fires (an hour).
MAX_REQUEST_VALUE = 1 << 20
POLICY = {"max_messages": 2, "max_bytes": 100, "max_seconds": 3600}
# Client requests, in order; the server answers each with its uppercase before the
# client sends the next. Each record travels in its own transport message.
REQUESTS = [b"hello", b"world",
            b"rekeying by bytes: this request and its response carry over one hundred"
            b" bytes of plaintext, so both end with REKEY", b"bye"]


def offer(suite_name, retry=b""):
    # Names are 20..=64 bytes, so an offer is never 32 bytes long (a v1 message 1).
    assert 20 <= len(suite_name) <= 64 and (not retry or 20 <= len(retry) <= 64)
    return MAGIC + bytes([2, len(suite_name)]) + suite_name + bytes([len(retry)]) + retry


def field(field_type, value):
    return field_type.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value


def name_list(names):
    return bytes([len(names)]) + b"".join(bytes([len(name)]) + name for name in names)


class Sender:
    """One direction's transport: counter, key epochs, and the rekey rule by counts."""

    def __init__(self, suite, key):
        self.suite, self.key, self.nonce = suite, key, 0
        self.keys = [key]
        self.messages = self.bytes = 0

    def send(self, plaintext):
        # The message that brings the count of messages under this key to
        # max_messages, or of plaintext bytes to max_bytes or past it, ends with REKEY.
        self.messages += 1
        self.bytes += len(plaintext)
        rekey = self.messages >= POLICY["max_messages"] or self.bytes >= POLICY["max_bytes"]
        if rekey:
            plaintext += record(REKEY, b"")
        message = self.suite.encrypt(self.key, self.nonce, b"", plaintext)
        self.nonce += 1  # Counters run on across rekeys.
        if rekey:
            self.key = self.suite.rekey(self.key)
            self.keys.append(self.key)
            self.messages = self.bytes = 0
        return plaintext, frame(message)


def check_v2(v, suite_short):
    suite = SUITES[suite_short]
    other = next(s for name, s in SUITES.items() if name != suite_short)
    checks = {"protocol_name": suite.name}
    identities(v, checks)
    prologue = offer(suite.name)
    assert len(prologue) == {"aesgcm": 41, "chachapoly": 46}[suite_short] and len(prologue) != 32
    policy = (POLICY["max_messages"].to_bytes(8, "big") + POLICY["max_bytes"].to_bytes(8, "big")
              + POLICY["max_seconds"].to_bytes(4, "big"))
    server_payload = (field(IDENTITY_ED25519, checks["server_ed25519_public"])
                      + field(MAX_REQUEST, MAX_REQUEST_VALUE.to_bytes(4, "big"))
                      + field(REKEY_POLICY, policy))
    client_payload = field(IDENTITY_ED25519, checks["client_ed25519_public"])
    assert len(server_payload) <= MAX_V2_PAYLOAD
    msg1, msg2, msg3, h, k_client, k_server = handshake(
        v, checks, suite, prologue, server_payload, client_payload)
    assert len(msg2) <= 32 + 48 + MAX_V2_PAYLOAD + 16 and len(msg3) <= 48 + MAX_V2_PAYLOAD + 16
    # The offer is authenticated: a client whose offer a man in the middle altered
    # (any byte, including the suite name and the retry field) cannot open msg2.
    assert opens_message2(v, checks, suite, prologue, msg2)
    for index in range(len(prologue)):
        tampered = bytearray(prologue)
        tampered[index] ^= 0x01
        assert not opens_message2(v, checks, suite, bytes(tampered), msg2), index
    assert not opens_message2(v, checks, suite, offer(suite.name, retry=other.name), msg2)
    checks.update(prologue=prologue, offer=frame(prologue), msg1=frame(msg1),
                  answer=frame(bytes([ACCEPT])), msg2_payload=server_payload, msg2=frame(msg2),
                  msg3_payload=client_payload, msg3=frame(msg3), handshake_hash=h)

    client, server = Sender(suite, k_client), Sender(suite, k_server)
    for index, body in enumerate(REQUESTS):
        plaintext, message = client.send(record(REQUEST, body))
        checks[f"client_plaintext_{index}"], checks[f"client_message_{index}"] = plaintext, message
        plaintext, message = server.send(record(RESPONSE, body.upper()))
        checks[f"server_plaintext_{index}"], checks[f"server_message_{index}"] = plaintext, message
    for side, sender in (("client", client), ("server", server)):
        for epoch, key in enumerate(sender.keys):
            checks[f"{side}_send_key_{epoch}"] = key
    # The script exercises both rules and messages after each rekey, in each direction.
    assert len(client.keys) == len(server.keys) == 3

    # Negotiation failures: what a server that runs only the other suite answers, the
    # client's retry on a new connection, and the two other refusals of this server.
    checks["unsupported_suite_answer"] = frame(bytes([UNSUPPORTED_SUITE]) + name_list([other.name]))
    checks["retry_offer"] = frame(offer(other.name, retry=suite.name))
    checks["unsupported_version_answer"] = frame(bytes([UNSUPPORTED_VERSION, 2, 1, 2]))
    checks["retry_refused_answer"] = frame(bytes([RETRY_REFUSED]))
    return checks


def check(path):
    v = load(path)
    name = Path(path).name
    if name.startswith("v1"):
        checks = check_v1(v)
    elif name.startswith("v2-"):
        checks = check_v2(v, name[len("v2-"):].split(".")[0])
    else:
        sys.exit(f"{path}: the name must start with v1 or v2-<suite>")
    for vector, expected in checks.items():
        if v.get(vector) != expected:
            sys.exit(f"{name}: MISMATCH {vector}: file {v.get(vector, b'').hex()} independent {expected.hex()}")
    unchecked = set(v) - set(checks) - INPUTS
    if unchecked:
        sys.exit(f"{name}: unchecked vectors: {sorted(unchecked)}")
    print(f"{name}: all {len(v)} vectors agree with the independent implementation")


def main(paths):
    here = Path(__file__).parent
    for path in paths or [here / "v1.txt", here / "v2-chachapoly.txt", here / "v2-aesgcm.txt"]:
        check(path)


if __name__ == "__main__":
    main(sys.argv[1:])
