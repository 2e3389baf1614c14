//! The wasm32-unknown-unknown build gives byte-identical output to the native build for the
//! same seed, on every series fixture, stored and deflated. Needs the wasm build of
//! examples/wasm_abi.rs in NEUROVOL_DEID_WASM and `node` on PATH; scripts/deid-wasm-check.sh
//! builds it and runs this test. Without them the test is SKIPPED loudly (or fails when
//! NEUROVOL_REQUIRE_WASM=1).

mod common;

use std::io::Cursor;
use std::process::Command;

use common::*;

#[test]
fn wasm_output_equals_native_output() {
    let Some(wasm) = std::env::var_os("NEUROVOL_DEID_WASM") else {
        if std::env::var("NEUROVOL_REQUIRE_WASM").is_ok_and(|v| v == "1") {
            panic!("NEUROVOL_DEID_WASM not set");
        }
        eprintln!("\n!!!!!!!! SKIPPED native-vs-WASM equality: run scripts/deid-wasm-check.sh !!!!!!!!\n");
        return;
    };
    let runner = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasm/deid_node.mjs");
    let tmp = std::env::temp_dir().join(format!("deid-wasm-eq-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let seed_hex = "5a".repeat(32);
    for name in SERIES_FIXTURES {
        for stored in [true, false] {
            let zip_path = fixtures().join(format!("{name}.zip"));
            let mut o = deid::Options::new([0x5a; 32]);
            if stored {
                o.compression = deid::OutputCompression::Stored;
            }
            let mut native = Cursor::new(Vec::new());
            deid::deidentify_zip(Cursor::new(std::fs::read(&zip_path).unwrap()), &mut native, &o).unwrap();
            let out = tmp.join(format!("{name}-{stored}.zip"));
            let st = Command::new("node")
                .arg(&runner)
                .arg(&wasm)
                .arg(&zip_path)
                .arg(&seed_hex)
                .arg(&out)
                .arg(if stored { "1" } else { "0" })
                .arg("1")
                .output()
                .expect("node");
            assert!(st.status.success(), "{name}: wasm run failed: {}", String::from_utf8_lossy(&st.stderr));
            let w = std::fs::read(&out).unwrap();
            assert!(w == native.get_ref()[..], "{name} (stored={stored}): wasm output differs from native");
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
