//! ZIP parsing + series grouping + DICOM parsing + de-identification + ZIP writing, on
//! arbitrary bytes. Limits are small so a crafted bomb cannot exhaust the fuzzer's memory:
//! the library must refuse it, never allocate past the limits, never panic.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = deid::Limits {
        max_entries: 512,
        max_total_bytes: 64 << 20,
        max_entry_bytes: 16 << 20,
        max_compression_ratio: 200,
        ratio_check_min_bytes: 1 << 20,
    };
    let _ = deid::inspect_zip(Cursor::new(data), &limits);
    let mut opts = deid::Options::new([1; 32]);
    opts.limits = limits;
    opts.series = Some(deid::SeriesSelector::Index(0));
    opts.compression = deid::OutputCompression::Stored;
    let mut out = Cursor::new(Vec::new());
    let _ = deid::deidentify_zip(Cursor::new(data), &mut out, &opts);
});
