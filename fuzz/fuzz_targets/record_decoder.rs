//! The record decoder and the frame decoder fed arbitrary bytes in arbitrary
//! chunks: they must never panic, never claim more input than they were given, and
//! hand back exactly the body bytes each header announced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noise_echo::wire::{decode_frame, Decoded, RecordDecoder, RecordEvent, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    // Frames: walk the buffer frame by frame.
    let mut rest = stream;
    while let Ok(Decoded::Frame { payload, consumed }) = decode_frame(rest) {
        assert!(!payload.is_empty() && consumed == payload.len() + 2 && consumed <= rest.len());
        rest = &rest[consumed..];
    }

    // Records: the control byte picks the sender, the protocol version (v2 knows
    // REKEY) and the chunk size.
    let sender = if control & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let v2 = control & 2 != 0;
    let chunk = usize::from(control >> 2) + 1;
    let mut decoder = if v2 {
        RecordDecoder::v2(sender)
    } else {
        RecordDecoder::new(sender)
    };
    let mut expected_body: Option<u64> = None;
    for piece in stream.chunks(chunk) {
        let mut input = piece;
        // Each call makes progress or asks for more, so this ends; bound it anyway.
        for _ in 0..=piece.len() * 2 + 2 {
            let (event, used) = match decoder.decode(input) {
                Ok(decoded) => decoded,
                Err(_) => return,
            };
            assert!(used <= input.len());
            match event {
                RecordEvent::NeedMore => {
                    assert_eq!(used, input.len());
                    break;
                }
                RecordEvent::Header(header) => {
                    assert!(expected_body.is_none());
                    if header.len > 0 {
                        expected_body = Some(u64::from(header.len));
                    }
                }
                RecordEvent::Rekey => {
                    assert!(v2 && expected_body.is_none() && used <= 5);
                }
                RecordEvent::Body { chunk, last } => {
                    assert!(!chunk.is_empty() && chunk.len() == used);
                    let remaining = expected_body.take().expect("body without a header");
                    let left = remaining - chunk.len() as u64;
                    assert_eq!(last, left == 0);
                    if !last {
                        expected_body = Some(left);
                    }
                }
            }
            input = &input[used..];
            if input.is_empty() {
                break;
            }
        }
    }
    assert_eq!(
        decoder.body_in_progress().is_some(),
        expected_body.is_some()
    );
});
