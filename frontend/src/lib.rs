#![recursion_limit = "256"]

//! Hydrates the server-rendered page in the browser.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
    // A flag end-to-end tests wait for before exercising interactive elements.
    if let Some(window) = web_sys::window() {
        let _ = js_sys::Reflect::set(&window, &"__neurovol_hydrated".into(), &true.into());
    }
}
