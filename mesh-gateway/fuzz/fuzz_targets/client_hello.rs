//! Untrusted first bytes of a connection through the ClientHello reader: it never panics, and
//! once a prefix parses, more bytes after it never change the answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_gateway::sni::parse_client_hello;

fuzz_target!(|data: &[u8]| {
    let whole = parse_client_hello(data);
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        if let Ok(Some(hello)) = parse_client_hello(&data[..cut]) {
            assert_eq!(whole, Ok(Some(hello)));
        }
    }
});
