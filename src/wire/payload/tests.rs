//! The field codec: bounds, truncation, duplicates, unknown and misplaced fields,
//! and round trips.

use super::*;
use proptest::prelude::*;

const KEY: [u8; 32] = [7; 32];

fn params() -> ServerParams {
    ServerParams {
        max_request: 1 << 20,
        rekey: RekeyPolicy::DEFAULT,
    }
}

fn field(field: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_field(&mut out, field, value);
    out
}

fn rekey_value(messages: u64, bytes: u64, seconds: u32) -> Vec<u8> {
    [
        &messages.to_be_bytes()[..],
        &bytes.to_be_bytes(),
        &seconds.to_be_bytes(),
    ]
    .concat()
}

#[test]
fn message_2_has_the_specified_bytes_in_table_order() {
    let bytes = encode_message2(&KEY, &params());
    assert_eq!(bytes.len(), MIN_MESSAGE2_PAYLOAD);
    assert_eq!(MIN_MESSAGE2_PAYLOAD, 68);
    let expected = [
        field(0x8001, &KEY),
        field(0x0002, &(1u32 << 20).to_be_bytes()),
        field(0x0003, &rekey_value(1 << 24, 1 << 30, 3600)),
    ]
    .concat();
    assert_eq!(bytes, expected);
    let decoded = decode_message2(&bytes).unwrap();
    assert_eq!(decoded.identity, KEY);
    assert_eq!(decoded.params, params());
    assert_eq!(encode_message3(&KEY), field(0x8001, &KEY));
    assert_eq!(decode_message3(&encode_message3(&KEY)), Ok(KEY));
}

#[test]
fn the_rekey_interval_travels_in_whole_seconds_of_at_least_one() {
    let mut odd = params();
    odd.rekey.max_interval = Duration::from_millis(1500);
    odd.rekey.max_messages = 0;
    let encoded = encode_message2(&KEY, &odd);
    let decoded = decode_message2(&encoded).unwrap();
    assert_eq!(decoded.params.rekey.max_interval, Duration::from_secs(1));
    assert_eq!(decoded.params.rekey.max_messages, 1);
    assert_eq!(decoded.params.rekey, wire_rekey_policy(odd.rekey));
    odd.rekey.max_interval = Duration::from_millis(10);
    odd.rekey.max_bytes = 0;
    let policy = wire_rekey_policy(odd.rekey);
    assert_eq!(
        (policy.max_interval, policy.max_bytes),
        (Duration::from_secs(1), 1)
    );
    odd.rekey.max_interval = Duration::from_secs(u64::MAX);
    assert_eq!(
        wire_rekey_policy(odd.rekey).max_interval,
        Duration::from_secs(u64::from(u32::MAX))
    );
}

#[test]
fn unknown_fields_are_skipped_unless_critical() {
    let identity = field(0x8001, &KEY);
    let skipped = [
        field(0x0042, b"later"),
        identity.clone(),
        field(0x7fff, &[]),
    ]
    .concat();
    assert_eq!(decode_message3(&skipped), Ok(KEY));
    let critical = [identity.clone(), field(0x8042, b"must know")].concat();
    assert_eq!(
        decode_message3(&critical),
        Err(PayloadProblem::UnknownCriticalField(0x8042))
    );
    // The certificate is 0x0004, not critical: 0x8004 is just another unknown.
    let certificate = [identity, field(0x8004, &[0; 100])].concat();
    assert_eq!(
        decode_message3(&certificate),
        Err(PayloadProblem::UnknownCriticalField(0x8004))
    );
}

#[test]
fn certificates_travel_in_messages_2_and_3_and_round_trip() {
    let blob = [0x5a; 300];
    let m2 = encode_message2_with_certificate(&KEY, &params(), Some(&blob));
    assert_eq!(m2.len(), MIN_MESSAGE2_PAYLOAD + 4 + 300);
    assert_eq!(&m2[MIN_MESSAGE2_PAYLOAD..][..4], &[0x00, 0x04, 0x01, 0x2c]);
    let decoded = decode_message2(&m2).unwrap();
    assert_eq!(decoded.certificate, Some(&blob[..]));
    assert_eq!(decoded.identity, KEY);
    let m3 = encode_message3_with_certificate(&KEY, Some(&blob));
    let fields = decode_message3_fields(&m3).unwrap();
    assert_eq!(
        (fields.identity, fields.certificate),
        (KEY, Some(&blob[..]))
    );
    assert_eq!(decode_message3(&m3), Ok(KEY));
    // Absent: none, and the encoding is the certificate-less one.
    assert_eq!(
        encode_message3_with_certificate(&KEY, None),
        encode_message3(&KEY)
    );
    assert_eq!(
        decode_message3_fields(&encode_message3(&KEY))
            .unwrap()
            .certificate,
        None
    );
    // Any order.
    let first = [field(0x0004, &blob), field(0x8001, &KEY)].concat();
    assert_eq!(
        decode_message3_fields(&first).unwrap().certificate,
        Some(&blob[..])
    );
}

#[test]
fn the_largest_certificate_fits_both_messages_and_the_bounds() {
    let blob = vec![1; MAX_CERTIFICATE_FIELD];
    let m2 = encode_message2_with_certificate(&KEY, &params(), Some(&blob));
    assert_eq!(m2.len(), MAX_V2_PAYLOAD);
    assert!(decode_message2(&m2).is_ok());
    let m3 = encode_message3_with_certificate(&KEY, Some(&blob));
    assert!(m3.len() < MAX_V2_PAYLOAD);
    assert!(decode_message3_fields(&m3).is_ok());
    let over = [m2, field(0x0042, &[])].concat();
    assert_eq!(decode_message2(&over), Err(PayloadProblem::TooLong(4100)));
}

#[test]
fn empty_or_repeated_certificates_are_refused() {
    let identity = field(0x8001, &KEY);
    let empty = [identity.clone(), field(0x0004, &[])].concat();
    assert_eq!(
        decode_message3(&empty),
        Err(PayloadProblem::Certificate(CertificateProblem::Malformed))
    );
    let twice = [identity, field(0x0004, b"a"), field(0x0004, b"b")].concat();
    assert_eq!(
        decode_message3(&twice),
        Err(PayloadProblem::DuplicateField(0x0004))
    );
}

#[test]
fn certificate_for_names_what_is_wrong() {
    use base64::Engine as _;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/keys/certs/valid-cert.pub"
    ))
    .unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(text.split_whitespace().nth(1).unwrap())
        .unwrap();
    let certified = Certificate::from_blob(&blob).unwrap().key;
    assert_eq!(certificate_for(&blob, &certified).unwrap().key, certified);
    let other = crate::identity::Identity::from_seed(&[9; 32], "other").public_key();
    let problem = |problem| Err(PayloadProblem::Certificate(problem));
    assert_eq!(
        certificate_for(&blob, &other),
        problem(CertificateProblem::KeyMismatch)
    );
    let mut forged = blob.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        certificate_for(&forged, &certified),
        problem(CertificateProblem::BadSignature)
    );
    assert_eq!(
        certificate_for(&blob[..100], &certified),
        problem(CertificateProblem::Malformed)
    );
    assert_eq!(
        certificate_for(b"\0\0\0\x0bssh-ed25519", &certified),
        problem(CertificateProblem::NotEd25519)
    );
}

#[test]
fn malformed_payloads_are_each_named() {
    let m2 = encode_message2(&KEY, &params());
    let identity = field(0x8001, &KEY);
    let max_request = field(0x0002, &[0, 0, 1, 0]);
    let rekey = field(0x0003, &rekey_value(1, 1, 1));
    let cases: Vec<(Vec<u8>, PayloadProblem)> = vec![
        (vec![], PayloadProblem::MissingField(0x8001)),
        (vec![0x80], PayloadProblem::TruncatedField { remaining: 1 }),
        (
            [identity.clone(), vec![0, 2, 0]].concat(),
            PayloadProblem::TruncatedField { remaining: 3 },
        ),
        (
            m2[..m2.len() - 1].to_vec(),
            PayloadProblem::FieldOverrun {
                field: 0x0003,
                len: 20,
                remaining: 19,
            },
        ),
        // A huge length is refused by comparison, never allocated.
        (
            vec![0x00, 0x42, 0xff, 0xff, 1, 2, 3],
            PayloadProblem::FieldOverrun {
                field: 0x0042,
                len: 65535,
                remaining: 3,
            },
        ),
        (
            [m2.clone(), identity.clone()].concat(),
            PayloadProblem::DuplicateField(0x8001),
        ),
        (
            [m2.clone(), field(0x0042, b""), field(0x0042, b"")].concat(),
            PayloadProblem::DuplicateField(0x0042),
        ),
        (
            [identity.clone(), rekey.clone()].concat(),
            PayloadProblem::MissingField(0x0002),
        ),
        (
            [identity.clone(), max_request.clone()].concat(),
            PayloadProblem::MissingField(0x0003),
        ),
        (
            [max_request.clone(), rekey.clone()].concat(),
            PayloadProblem::MissingField(0x8001),
        ),
        (
            [field(0x8001, &[7; 31]), max_request.clone(), rekey.clone()].concat(),
            PayloadProblem::FieldLength {
                field: 0x8001,
                len: 31,
                expected: 32,
            },
        ),
        (
            [identity.clone(), field(0x0002, &[1; 8]), rekey.clone()].concat(),
            PayloadProblem::FieldLength {
                field: 0x0002,
                len: 8,
                expected: 4,
            },
        ),
        (
            [
                identity.clone(),
                max_request.clone(),
                field(0x0003, &[1; 19]),
            ]
            .concat(),
            PayloadProblem::FieldLength {
                field: 0x0003,
                len: 19,
                expected: 20,
            },
        ),
        (
            [m2.clone(), vec![0; MAX_V2_PAYLOAD]].concat(),
            PayloadProblem::TooLong(m2.len() + MAX_V2_PAYLOAD),
        ),
    ];
    for (bytes, problem) in cases {
        assert_eq!(decode_message2(&bytes), Err(problem), "{bytes:02x?}");
    }
    for (messages, bytes, seconds) in [(0, 1, 1), (1, 0, 1), (1, 1, 0)] {
        let payload = [
            identity.clone(),
            max_request.clone(),
            field(0x0003, &rekey_value(messages, bytes, seconds)),
        ]
        .concat();
        assert_eq!(
            decode_message2(&payload),
            Err(PayloadProblem::ZeroRekeyLimit)
        );
    }
}

#[test]
fn fields_of_the_other_message_are_refused() {
    let m2 = encode_message2(&KEY, &params());
    assert_eq!(
        decode_message3(&m2),
        Err(PayloadProblem::FieldInWrongMessage(0x0002))
    );
    let identity = field(0x8001, &KEY);
    assert_eq!(
        decode_message3(&[identity, field(0x0003, &rekey_value(1, 1, 1))].concat()),
        Err(PayloadProblem::FieldInWrongMessage(0x0003))
    );
}

#[test]
fn a_payload_of_exactly_the_limit_is_accepted() {
    let m2 = encode_message2(&KEY, &params());
    let filler = MAX_V2_PAYLOAD - m2.len() - FIELD_HEADER_LEN;
    let payload = [m2, field(0x0042, &vec![0; filler])].concat();
    assert_eq!(payload.len(), MAX_V2_PAYLOAD);
    assert!(decode_message2(&payload).is_ok());
}

fn params_strategy() -> impl Strategy<Value = ServerParams> {
    (any::<u32>(), 1..=u64::MAX, 1..=u64::MAX, 1..=u32::MAX).prop_map(
        |(max_request, max_messages, max_bytes, seconds)| ServerParams {
            max_request,
            rekey: RekeyPolicy {
                max_messages,
                max_bytes,
                max_interval: Duration::from_secs(u64::from(seconds)),
            },
        },
    )
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let _ = decode_message2(&bytes);
        let _ = decode_message3(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_near_valid_payloads(
        cut in 0usize..200,
        flip in 0usize..200,
        bit in 0u8..8,
        extra in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut bytes = [encode_message2(&KEY, &params()), extra].concat();
        if let Some(byte) = bytes.get_mut(flip) {
            *byte ^= 1 << bit;
        }
        bytes.truncate(cut);
        let _ = decode_message2(&bytes);
        let _ = decode_message3(&bytes);
    }

    #[test]
    fn message_2_round_trips(identity in any::<[u8; 32]>(), params in params_strategy()) {
        let bytes = encode_message2(&identity, &params);
        let decoded = decode_message2(&bytes).unwrap();
        prop_assert_eq!(decoded.identity, identity);
        prop_assert_eq!(decoded.params, params);
    }
}
