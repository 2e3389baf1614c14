//! One Part 10 file: meta parsing, token walk in every transfer syntax the fuzzer picks,
//! rules, UID mapping, re-encoding, previews. The input is placed after a zero preamble and
//! "DICM" so the fuzzer spends its time inside the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    file.extend_from_slice(data);
    for profile in [deid::Profile::Basic, deid::Profile::Seed] {
        if let Ok(out) = deid::deidentify_file_bytes(&file, profile, [2; 32]) {
            // our own output must always be accepted again
            assert!(deid::deidentify_file_bytes(&out.bytes, profile, [3; 32]).is_ok());
        }
        let _ = deid::preview_removals(&file, profile);
    }
});
