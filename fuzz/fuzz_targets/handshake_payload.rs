//! Protocol v2's handshake payload decoder fed arbitrary bytes: nothing may panic,
//! and a payload that decodes carries exactly what its canonical encoding does,
//! the openssh_certificate field included.
//!
//! The first byte picks the message (even: message 2, odd: message 3); the rest is
//! the payload. Bounds are checked before anything is read or allocated, so inputs
//! far over `MAX_V2_PAYLOAD` are refused at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noise_echo::wire::{self, PayloadProblem};

fuzz_target!(|data: &[u8]| {
    let Some((&message, payload)) = data.split_first() else {
        return;
    };
    if message % 2 == 0 {
        match wire::decode_message2(payload) {
            Ok(fields) => {
                assert!(payload.len() >= wire::MIN_MESSAGE2_PAYLOAD);
                assert!(payload.len() <= wire::MAX_V2_PAYLOAD);
                let canonical = wire::encode_message2_with_certificate(
                    &fields.identity,
                    &fields.params,
                    fields.certificate,
                );
                assert_eq!(wire::decode_message2(&canonical), Ok(fields));
                assert_eq!(
                    wire::wire_rekey_policy(fields.params.rekey),
                    fields.params.rekey
                );
            }
            Err(PayloadProblem::TooLong(len)) => assert!(len > wire::MAX_V2_PAYLOAD),
            Err(_) => {}
        }
    } else if let Ok(fields) = wire::decode_message3_fields(payload) {
        assert!(payload.len() >= wire::MIN_MESSAGE3_PAYLOAD);
        let canonical =
            wire::encode_message3_with_certificate(&fields.identity, fields.certificate);
        assert_eq!(wire::decode_message3_fields(&canonical), Ok(fields));
    }
});
