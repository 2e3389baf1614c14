//! Minimal C ABI over `deidentify_zip` so plain Node can run the wasm32 build without
//! wasm-bindgen: `nv_alloc` input buffers, `nv_deid_zip` (returns 0 or an error code),
//! then read `nv_out_ptr`/`nv_out_len`: the output ZIP, or after an error the error's JSON.
//! Used by scripts/deid-wasm-check.sh.

use std::io::Cursor;
use std::sync::Mutex;

static OUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

#[unsafe(no_mangle)]
pub extern "C" fn nv_alloc(len: usize) -> *mut u8 {
    let mut v = Vec::<u8>::with_capacity(len.max(1));
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

/// # Safety
/// `ptr` must come from `nv_alloc(len)` and not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nv_free(ptr: *mut u8, len: usize) {
    // SAFETY: allocated by nv_alloc with this capacity
    drop(unsafe { Vec::from_raw_parts(ptr, 0, len.max(1)) });
}

/// # Safety
/// `zip` points at `zip_len` readable bytes, `seed` at 32.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nv_deid_zip(zip: *const u8, zip_len: usize, seed: *const u8, stored: u32) -> u32 {
    // SAFETY: the caller passes buffers it filled through nv_alloc
    let (input, seed) = unsafe {
        (
            std::slice::from_raw_parts(zip, zip_len),
            std::slice::from_raw_parts(seed, 32),
        )
    };
    let mut s = [0u8; 32];
    s.copy_from_slice(seed);
    let mut o = deid::Options::new(s);
    if stored != 0 {
        o.compression = deid::OutputCompression::Stored;
    }
    let mut out = Cursor::new(Vec::new());
    let (rc, bytes) = match deid::deidentify_zip(Cursor::new(input), &mut out, &o) {
        Ok(_) => (0, out.into_inner()),
        Err(e) => {
            let json = serde_json::to_string(&e).unwrap_or_default();
            (1 + json.len() as u32, json.into_bytes())
        }
    };
    if let Ok(mut g) = OUT.lock() {
        *g = bytes;
    }
    rc
}

#[unsafe(no_mangle)]
pub extern "C" fn nv_out_ptr() -> *const u8 {
    OUT.lock().map(|g| g.as_ptr()).unwrap_or(std::ptr::null())
}

#[unsafe(no_mangle)]
pub extern "C" fn nv_out_len() -> usize {
    OUT.lock().map(|g| g.len()).unwrap_or(0)
}

static FILES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Inflate the Part 10 entries of a ZIP into memory (benchmark set-up); returns the count.
///
/// # Safety
/// `zip` points at `zip_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nv_load_files(zip: *const u8, zip_len: usize) -> u32 {
    use std::io::Read;
    // SAFETY: buffer filled by the caller through nv_alloc
    let input = unsafe { std::slice::from_raw_parts(zip, zip_len) };
    let Ok(mut za) = zip::ZipArchive::new(Cursor::new(input)) else {
        return 0;
    };
    let mut files = Vec::new();
    for i in 0..za.len() {
        let Ok(mut f) = za.by_index(i) else { continue };
        if f.name_raw().ends_with(b"DICOMDIR") {
            continue;
        }
        let mut v = Vec::new();
        if f.read_to_end(&mut v).is_ok() && v.len() > 132 && &v[128..132] == b"DICM" {
            files.push(v);
        }
    }
    let n = files.len() as u32;
    if let Ok(mut g) = FILES.lock() {
        *g = files;
    }
    n
}

/// De-identify the loaded files one by one (parse + rules + encode); returns output bytes.
#[unsafe(no_mangle)]
pub extern "C" fn nv_deid_loaded(seed_byte: u32) -> u64 {
    let Ok(g) = FILES.lock() else { return 0 };
    let mut d = deid::Deidentifier::new(deid::Profile::Basic, [seed_byte as u8; 32]);
    g.iter().map(|f| d.file(f).map(|o| o.len() as u64).unwrap_or(0)).sum()
}
