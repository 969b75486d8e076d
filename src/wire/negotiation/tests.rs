//! The offer and answer codecs: every malformed length, truncation and trailing
//! byte, and round trips of anything well-formed.

use super::*;
use proptest::prelude::*;

const CHACHA: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
const AESGCM: &str = "Noise_XX_25519_AESGCM_SHA256";

fn offer_bytes(version: u8, name: &[u8], retry: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(version);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.push(retry.len() as u8);
    out.extend_from_slice(retry);
    out
}

#[test]
fn first_attempts_have_the_specified_bytes_and_lengths() {
    let aes = Offer::new(Suite::AesGcmSha256).encode();
    assert_eq!(aes.len(), 41);
    assert_eq!(aes, offer_bytes(2, AESGCM.as_bytes(), b""));
    let chacha = Offer::new(Suite::ChaChaPolyBlake2s).encode();
    assert_eq!(chacha.len(), 46);
    assert_eq!(&chacha[..12], b"noise-echo\x02\x21");
    let retry = Offer::retrying(Suite::ChaChaPolyBlake2s, Suite::AesGcmSha256);
    assert_eq!(
        retry.encode(),
        offer_bytes(2, CHACHA.as_bytes(), AESGCM.as_bytes())
    );
    assert_eq!(Offer::decode(&retry.encode()), Ok(retry.clone()));
    assert_eq!(retry.retry(), Some(AESGCM));
    assert_eq!(retry.suite(), Some(Suite::ChaChaPolyBlake2s));
    // The shortest valid offer is 33 bytes: never a 32-byte v1 message 1.
    let shortest = offer_bytes(2, &[b'N'; MIN_OFFER_NAME_LEN], b"");
    assert_eq!(shortest.len(), 33);
    assert!(Offer::decode(&shortest).is_ok());
    let would_be_32 = offer_bytes(2, &[b'N'; MIN_OFFER_NAME_LEN - 1], b"");
    assert_eq!(would_be_32.len(), MSG1_LEN);
    assert_eq!(
        Offer::decode(&would_be_32),
        Err(OfferProblem::NameLength(19))
    );
}

#[test]
fn malformed_offers_are_each_named() {
    let name = CHACHA.as_bytes();
    let good = offer_bytes(2, name, b"");
    let cases: Vec<(Vec<u8>, OfferProblem)> = vec![
        (b"noise-echX\x02".to_vec(), OfferProblem::NoMagic),
        (b"noise-echo".to_vec(), OfferProblem::Truncated),
        (offer_bytes(3, name, b""), OfferProblem::Version(3)),
        (offer_bytes(2, b"", b""), OfferProblem::NameLength(0)),
        (
            offer_bytes(2, &[b'A'; 65], b""),
            OfferProblem::NameLength(65),
        ),
        (offer_bytes(2, b"Noise", b""), OfferProblem::NameLength(5)),
        (offer_bytes(2, name, b"Noise"), OfferProblem::NameLength(5)),
        (
            offer_bytes(2, name, &[b'A'; 65]),
            OfferProblem::NameLength(65),
        ),
        (
            offer_bytes(2, b"Noise_XX_25519_\xff_SHA256", b""),
            OfferProblem::NameNotAscii,
        ),
        (
            offer_bytes(2, b"Noise_XX_25519 AESGCM_SHA256", b""),
            OfferProblem::NameNotAscii,
        ),
        (
            offer_bytes(2, name, b"Noise_XX_25519_AESGCM_SHA25\n"),
            OfferProblem::NameNotAscii,
        ),
        (
            [good.clone(), vec![0]].concat(),
            OfferProblem::TrailingBytes(1),
        ),
        (good[..good.len() - 1].to_vec(), OfferProblem::Truncated),
        (good[..12].to_vec(), OfferProblem::Truncated),
        (good[..11].to_vec(), OfferProblem::Truncated),
        // A name length that runs past the end (255 > 64 is refused first).
        (
            b"noise-echo\x02\xff".to_vec(),
            OfferProblem::NameLength(255),
        ),
        (b"noise-echo\x02\x40abc".to_vec(), OfferProblem::Truncated),
    ];
    for (bytes, problem) in cases {
        assert_eq!(Offer::decode(&bytes), Err(problem), "{bytes:?}");
    }
    // Every truncation of a retry offer fails, none panics.
    let retry = offer_bytes(2, name, AESGCM.as_bytes());
    for len in 0..retry.len() {
        assert!(Offer::decode(&retry[..len]).is_err(), "{len}");
    }
}

#[test]
fn an_offer_of_an_unknown_suite_decodes_for_the_server_to_answer() {
    let offer = Offer::decode(&offer_bytes(2, b"Noise_XX_25519_AESGCM_BLAKE2s", b"")).unwrap();
    assert_eq!(offer.retry(), None);
    assert_eq!(offer.suite(), None);
    assert_eq!(offer.name(), "Noise_XX_25519_AESGCM_BLAKE2s");
}

#[test]
fn first_frames_are_classified_by_the_recognition_rule() {
    assert_eq!(FirstFrame::classify(&[0x55; 32]), FirstFrame::V1Message1);
    // Even a 32-byte frame that starts with the magic is a v1 message 1.
    let mut magic32 = MAGIC.to_vec();
    magic32.resize(32, 2);
    assert_eq!(FirstFrame::classify(&magic32), FirstFrame::V1Message1);
    let offer = Offer::new(Suite::AesGcmSha256);
    assert_eq!(
        FirstFrame::classify(&offer.encode()),
        FirstFrame::Offer(offer)
    );
    assert_eq!(
        FirstFrame::classify(b"noise-echo\x03anything at all"),
        FirstFrame::OtherVersion(3)
    );
    assert_eq!(
        FirstFrame::classify(b"noise-echo\x01"),
        FirstFrame::OtherVersion(1)
    );
    assert_eq!(
        FirstFrame::classify(b"noise-echo"),
        FirstFrame::Garbage(OfferProblem::Truncated)
    );
    assert_eq!(
        FirstFrame::classify(&[0x55; 33]),
        FirstFrame::Garbage(OfferProblem::NoMagic)
    );
    assert_eq!(
        FirstFrame::classify(&[0x55; 500]),
        FirstFrame::Garbage(OfferProblem::Size(500))
    );
    assert_eq!(
        FirstFrame::classify(&offer_bytes(2, b"", b"")),
        FirstFrame::Garbage(OfferProblem::NameLength(0))
    );
}

#[test]
fn answers_have_the_specified_bytes() {
    assert_eq!(Answer::Accept.encode(), [0]);
    assert_eq!(Answer::RetryRefused.encode(), [3]);
    assert_eq!(
        Answer::UnsupportedVersion(vec![1, 2]).encode(),
        [2, 2, 1, 2]
    );
    let suites = Answer::UnsupportedSuite(vec![AESGCM.to_owned(), CHACHA.to_owned()]);
    let bytes = suites.encode();
    assert_eq!(&bytes[..3], &[1, 2, AESGCM.len() as u8]);
    assert_eq!(bytes.len(), 3 + AESGCM.len() + 1 + CHACHA.len());
    for answer in [
        Answer::Accept,
        Answer::RetryRefused,
        Answer::UnsupportedVersion(vec![1, 2]),
        Answer::UnsupportedVersion(vec![]),
        suites,
    ] {
        assert_eq!(Answer::decode(&answer.encode()), Ok(answer));
    }
}

#[test]
fn malformed_answers_are_violations() {
    let cases: Vec<(&[u8], AnswerProblem)> = vec![
        (b"", AnswerProblem::Truncated),
        (b"\x00\x00", AnswerProblem::TrailingBytes(1)),
        (b"\x03x", AnswerProblem::TrailingBytes(1)),
        (b"\x04", AnswerProblem::UnknownStatus(4)),
        (b"\xff", AnswerProblem::UnknownStatus(0xff)),
        (b"\x01", AnswerProblem::Truncated),
        (b"\x01\x00", AnswerProblem::EmptySuiteList),
        (b"\x01\x01", AnswerProblem::Name(OfferProblem::Truncated)),
        (
            b"\x01\x01\x00",
            AnswerProblem::Name(OfferProblem::NameLength(0)),
        ),
        (
            b"\x01\x01\x41",
            AnswerProblem::Name(OfferProblem::NameLength(0x41)),
        ),
        (
            b"\x01\x01\x03ab",
            AnswerProblem::Name(OfferProblem::Truncated),
        ),
        (
            b"\x01\x01\x02a\x07",
            AnswerProblem::Name(OfferProblem::NameNotAscii),
        ),
        (
            b"\x01\x02\x01a",
            AnswerProblem::Name(OfferProblem::Truncated),
        ),
        (b"\x01\x01\x01ab", AnswerProblem::TrailingBytes(1)),
        (b"\x02", AnswerProblem::Truncated),
        (b"\x02\x03\x01\x02", AnswerProblem::Truncated),
        (b"\x02\x01\x01\x02", AnswerProblem::TrailingBytes(1)),
        // A count of 255 with nothing behind it: refused without allocating names.
        (b"\x01\xff", AnswerProblem::Name(OfferProblem::Truncated)),
    ];
    for (bytes, problem) in cases {
        assert_eq!(Answer::decode(bytes), Err(problem), "{bytes:?}");
    }
}

#[test]
fn versions_parse_and_print() {
    assert_eq!("1".parse(), Ok(ProtocolVersion::V1));
    assert_eq!("v2".parse(), Ok(ProtocolVersion::V2));
    assert!("3".parse::<ProtocolVersion>().is_err());
    assert!("".parse::<ProtocolVersion>().is_err());
    assert_eq!(ProtocolVersion::V2.to_string(), "2");
    assert_eq!(ProtocolVersion::from_number(0), None);
}

fn name_strategy() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[!-~]{20,64}").unwrap()
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Offer::decode(&bytes);
        let _ = Answer::decode(&bytes);
        let _ = FirstFrame::classify(&bytes);
        let mut offer = MAGIC.to_vec();
        offer.push(2);
        offer.extend_from_slice(&bytes);
        let _ = Offer::decode(&offer);
    }

    #[test]
    fn offers_round_trip(name in name_strategy(), retry in proptest::option::of(name_strategy())) {
        let offer = Offer { name, retry };
        let bytes = offer.encode();
        prop_assert!(bytes.len() <= MAX_OFFER_LEN);
        prop_assert_ne!(bytes.len(), MSG1_LEN);
        prop_assert_eq!(FirstFrame::classify(&bytes), FirstFrame::Offer(offer.clone()));
        prop_assert_eq!(Offer::decode(&bytes), Ok(offer));
    }

    #[test]
    fn answers_round_trip(
        names in proptest::collection::vec(name_strategy(), 1..20),
        versions in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        for answer in [Answer::UnsupportedSuite(names.clone()), Answer::UnsupportedVersion(versions.clone())] {
            let bytes = answer.encode();
            prop_assert!(bytes.len() <= MAX_ANSWER_LEN);
            prop_assert_eq!(Answer::decode(&bytes), Ok(answer));
        }
    }
}
