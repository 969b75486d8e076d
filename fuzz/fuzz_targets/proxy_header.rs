//! The PROXY protocol header parser fed arbitrary bytes: it must never panic, a
//! complete header is never longer than its input or the bound, its parse does not
//! depend on how much of it has arrived, and an error stays an error as bytes come.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noise_echo::server::proxy_protocol::{parse, Parsed, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let result = parse(data);
    match &result {
        Ok(Parsed::Complete(header)) => {
            assert!(header.len <= data.len() && header.len <= MAX_HEADER_LEN);
            assert_eq!(parse(&data[..header.len]), result);
            // The reader takes every byte of an incomplete header off the socket:
            // none may be past the header's end.
            for cut in 0..header.len {
                assert_eq!(parse(&data[..cut]), Ok(Parsed::Incomplete), "{cut}");
            }
        }
        Ok(Parsed::Incomplete) => assert!(data.len() < MAX_HEADER_LEN),
        Err(_) => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\r\n\0\0");
            assert!(parse(&longer).is_err());
        }
    }
});
