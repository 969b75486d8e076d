//! Writes seed inputs for the fuzz targets into `corpus/<target>/`: for
//! `handshake_responder`, a real message 1 (raw mode) and record scripts for an
//! authenticated session (session mode); valid files for the parsers.

use noise_echo::identity::Identity;
use noise_echo::wire::{self, LocalIdentity, RecordType};

/// A real message 1.
fn message1() -> [u8; wire::MSG1_LEN] {
    let client = LocalIdentity::new(&Identity::from_seed(&[0xc7; 32], "fuzz client"));
    let (_, message) =
        wire::Initiator::start_with_fixed_ephemeral_for_testing_only(&client, &[0xc1; 32]).unwrap();
    message
}

/// A raw-mode input: mode byte 0, then the frame of a real message 1.
fn raw_message1() -> Vec<u8> {
    let mut input = vec![0u8];
    wire::encode_frame(&message1(), &mut input).unwrap();
    input
}

/// A core-mode input: mode byte 2, message 1's length and bytes, then a message 3
/// of the right size.
fn core_messages() -> Vec<u8> {
    let mut input = vec![2u8, wire::MSG1_LEN as u8];
    input.extend_from_slice(&message1());
    input.extend_from_slice(&[0u8; wire::MSG3_LEN]);
    input
}

/// A session-mode input: mode byte 1, then each request as operation 0, its length
/// (two bytes, little-endian) and its body, then a flush (operation 2).
fn session_script(requests: &[&[u8]]) -> Vec<u8> {
    let mut script = vec![1u8];
    for request in requests {
        script.push(0);
        script.extend_from_slice(&(request.len() as u16).to_le_bytes());
        script.extend_from_slice(request);
    }
    script.push(2);
    script
}

/// Seeds for the v2 targets: offers, answers, a client's first write, a server's
/// first write, and both payloads.
fn v2_seeds(write: &dyn Fn(&str, &str, &[u8])) {
    let retry = wire::Offer::retrying(wire::Suite::ChaChaPolyBlake2s, wire::Suite::AesGcmSha256);
    for (name, offer) in [
        ("offer_aesgcm", wire::Offer::new(wire::Suite::AesGcmSha256)),
        ("offer_retry", retry),
    ] {
        write("negotiation", name, &[&[0u8][..], &offer.encode()].concat());
        let mut client = vec![1u8];
        wire::encode_frame(&offer.encode(), &mut client).unwrap();
        wire::encode_frame(&message1(), &mut client).unwrap();
        write("negotiation", &format!("client_{name}"), &client);
    }
    let suites = wire::Answer::UnsupportedSuite(
        wire::Suite::ALL
            .map(|suite| suite.noise_name().to_owned())
            .to_vec(),
    );
    write(
        "negotiation",
        "answer_suites",
        &[&[0u8][..], &suites.encode()].concat(),
    );
    let mut server = vec![2u8];
    wire::encode_frame(&wire::Answer::Accept.encode(), &mut server).unwrap();
    wire::encode_frame(&[0x42; wire::MSG2_V2_MIN], &mut server).unwrap();
    write("negotiation", "server_accept", &server);
    let key = [0x42; 32];
    let params = wire::ServerParams::new(1 << 20, wire::RekeyPolicy::DEFAULT);
    let message2 = wire::encode_message2(&key, &params);
    write(
        "handshake_payload",
        "message2",
        &[&[0u8][..], &message2].concat(),
    );
    let message3 = wire::encode_message3(&key);
    write(
        "handshake_payload",
        "message3",
        &[&[1u8][..], &message3].concat(),
    );
    let certificate = certificate_blob("valid");
    let message3 = wire::encode_message3_with_certificate(&key, Some(&certificate));
    write(
        "handshake_payload",
        "message3_certificate",
        &[&[1u8][..], &message3].concat(),
    );
}

/// The blob of the ssh-keygen fixture `keys/certs/NAME-cert.pub`.
fn certificate_blob(name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let path = std::path::Path::new("..")
        .join("keys/certs")
        .join(format!("{name}-cert.pub"));
    let line = std::fs::read_to_string(path).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(line.split_whitespace().nth(1).unwrap())
        .unwrap()
}

fn main() {
    // Into corpus/ unless told another directory (run.sh keeps them apart from the
    // committed, minimised corpus).
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "corpus".to_owned());
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = std::path::Path::new(&out).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    write(
        "handshake_responder",
        "session",
        &session_script(&[b"hello", b"", "ünïcode ΐ".as_bytes(), &[0xff, 0xfe]]),
    );
    write(
        "handshake_responder",
        "over_the_limit",
        &session_script(&[&[b'a'; 5000]]),
    );
    write("handshake_responder", "message1", &raw_message1());
    write("handshake_responder", "core", &core_messages());
    let root = std::path::Path::new("..").join("keys");
    for (target, files) in [
        (
            "private_key",
            &[
                "client_ed25519",
                "host_ed25519_key",
                "client_ed25519.pub",
                "rsa_3072",
                "passphrase_ed25519",
            ][..],
        ),
        (
            "authorized_keys",
            &["authorized_keys", "authorized_keys_sshd", "forge_user.keys"][..],
        ),
        ("known_hosts", &["known_hosts", "known_hosts_hashed"][..]),
    ] {
        for file in files {
            write(target, file, &std::fs::read(root.join(file)).unwrap());
        }
    }
    let mut records = vec![0u8];
    for body in [&b"abc"[..], b"", &[0x41; 300]] {
        wire::encode_record(RecordType::Request, body, &mut records).unwrap();
    }
    write("record_decoder", "requests", &records);
    v2_seeds(&write);
    // Every ssh-keygen certificate fixture: each option, extension and validity
    // variant is its own path through the decoder and the policy checks.
    for entry in std::fs::read_dir(root.join("certs")).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        if let Some(name) = file.strip_suffix("-cert.pub") {
            write("certificate", name, &certificate_blob(name));
        }
    }
    // The ssh-keygen KRLs (every section type) and the revoked-keys text list.
    for entry in std::fs::read_dir(root.join("certs/krl")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".krl") || name == "revoked_keys" {
            write("krl", &name, &std::fs::read(&path).unwrap());
        }
    }
    // PROXY protocol headers as HAProxy sends them: v1 lines, v2 for a TCP client
    // (with a TLV), and v2 LOCAL (its health checks), each with handshake bytes behind.
    use noise_echo::server::proxy_protocol::encode_v2;
    let (client, server) = (
        "127.0.0.5:40000".parse().unwrap(),
        "127.0.0.1:1234".parse().unwrap(),
    );
    write(
        "proxy_header",
        "v1_tcp4",
        b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 1234\r\n\0\x20",
    );
    write(
        "proxy_header",
        "v1_tcp6",
        b"PROXY TCP6 2001:db8::5 ::1 40000 1234\r\n",
    );
    write("proxy_header", "v1_unknown", b"PROXY UNKNOWN\r\n");
    let mut v2 = encode_v2(Some((client, server)));
    write("proxy_header", "v2_tcp4", &v2);
    v2.extend_from_slice(b"\x01\x00\x02h2");
    let len = (v2.len() - 16) as u16;
    v2[14..16].copy_from_slice(&len.to_be_bytes());
    write("proxy_header", "v2_tlv", &v2);
    write("proxy_header", "v2_local", &encode_v2(None));
    let v6 = (
        "[2001:db8::5]:40000".parse().unwrap(),
        "[::1]:1234".parse().unwrap(),
    );
    let v2_tcp6 = encode_v2(Some(v6));
    write("proxy_header", "v2_tcp6", &v2_tcp6);
    // Truncated headers: the parser must answer Incomplete, not an error or a panic.
    write(
        "proxy_header",
        "v2_truncated",
        &v2_tcp6[..v2_tcp6.len() - 7],
    );
    write("proxy_header", "v2_signature_only", &v2_tcp6[..12]);
    write(
        "proxy_header",
        "v1_truncated",
        b"PROXY TCP4 127.0.0.5 127.0",
    );
    println!("seeds written under {out}/");
}
