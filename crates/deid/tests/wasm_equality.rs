//! The wasm32-unknown-unknown build gives byte-identical output to the native build for the
//! same seed, on every series fixture and on the T1 series re-written with the Deflated
//! transfer syntax, stored and deflated; and refuses a deflate bomb with the native build's
//! error. Needs the wasm build of examples/wasm_abi.rs in NEUROVOL_DEID_WASM and `node` on
//! PATH; scripts/deid-wasm-check.sh builds it and runs this test. Without them the tests are
//! SKIPPED loudly (or fail when NEUROVOL_REQUIRE_WASM=1).

mod common;

use std::ffi::OsString;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn wasm_build() -> Option<OsString> {
    let wasm = std::env::var_os("NEUROVOL_DEID_WASM");
    if wasm.is_none() {
        if std::env::var("NEUROVOL_REQUIRE_WASM").is_ok_and(|v| v == "1") {
            panic!("NEUROVOL_DEID_WASM not set");
        }
        eprintln!("\n!!!!!!!! SKIPPED native-vs-WASM test: run scripts/deid-wasm-check.sh !!!!!!!!\n");
    }
    wasm
}

fn temp_dir(what: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("deid-wasm-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// The wasm build's `deidentify_zip` on `zip_path` under Node, output into `out`.
fn run_wasm(wasm: &OsString, zip_path: &Path, seed_byte: u8, stored: bool, out: &Path) -> Output {
    let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasm/deid_node.mjs");
    Command::new("node")
        .arg(&runner)
        .arg(wasm)
        .arg(zip_path)
        .arg(format!("{seed_byte:02x}").repeat(32))
        .arg(out)
        .arg(if stored { "1" } else { "0" })
        .arg("1")
        .output()
        .expect("node")
}

#[test]
fn wasm_output_equals_native_output() {
    let Some(wasm) = wasm_build() else { return };
    let tmp = temp_dir("eq");
    let deflated_t1 = tmp.join("t1_mprage_sag_phi.deflated.zip");
    std::fs::write(&deflated_t1, deflated_fixture_zip("t1_mprage_sag_phi")).unwrap();
    let mut inputs: Vec<PathBuf> = SERIES_FIXTURES
        .iter()
        .map(|n| fixtures().join(format!("{n}.zip")))
        .collect();
    inputs.push(deflated_t1);
    for zip_path in &inputs {
        let name = zip_path.file_name().unwrap().to_string_lossy();
        for stored in [true, false] {
            let mut o = deid::Options::new([0x5a; 32]);
            if stored {
                o.compression = deid::OutputCompression::Stored;
            }
            let mut native = Cursor::new(Vec::new());
            deid::deidentify_zip(Cursor::new(std::fs::read(zip_path).unwrap()), &mut native, &o).unwrap();
            let out = tmp.join(format!("{name}-{stored}.out.zip"));
            let st = run_wasm(&wasm, zip_path, 0x5a, stored, &out);
            assert!(
                st.status.success(),
                "{name}: wasm run failed: {}",
                String::from_utf8_lossy(&st.stderr)
            );
            let w = std::fs::read(&out).unwrap();
            assert!(
                w == native.get_ref()[..],
                "{name} (stored={stored}): wasm output differs from native"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn wasm_refuses_a_deflate_bomb_with_the_native_error() {
    let Some(wasm) = wasm_build() else { return };
    let tmp = temp_dir("bomb");
    let limit = deid::Limits::default().max_entry_bytes;
    let zip = zip_of(&[deflate_bomb(limit + 1024 * 1024)]);
    let zip_path = tmp.join("bomb.zip");
    std::fs::write(&zip_path, &zip).unwrap();
    let native = deid::deidentify_zip(Cursor::new(&zip), Cursor::new(Vec::new()), &deid::Options::new([7; 32]))
        .expect_err("native refuses the bomb");
    assert_eq!(
        native,
        deid::DeidError::TooLargeWhenExtracted {
            limit_mib: limit / (1024 * 1024)
        }
    );
    let out = tmp.join("bomb.out.zip");
    let st = run_wasm(&wasm, &zip_path, 7, true, &out);
    let stderr = String::from_utf8_lossy(&st.stderr);
    assert_eq!(st.status.code(), Some(2), "wasm: refused, not crashed: {stderr}");
    let err = serde_json::to_string(&native).unwrap();
    assert!(stderr.contains(&err), "wasm error {stderr} is not the native {err}");
    assert!(!out.exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&tmp);
}
