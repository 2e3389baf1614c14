//! Browser glue for the upload page: the de-identification Web Worker and the chunked
//! upload over XHR. Only ever called from event handlers, i.e. in the hydrated page.

use std::future::Future;
use std::rc::Rc;

use js_sys::{Array, Object, Promise, Reflect};
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, MessageEvent, Worker, WorkerOptions, WorkerType, XmlHttpRequest};

pub fn get_str(v: &JsValue, k: &str) -> Option<String> {
    Reflect::get(v, &k.into()).ok().and_then(|x| x.as_string())
}
pub fn get_num(v: &JsValue, k: &str) -> Option<f64> {
    Reflect::get(v, &k.into()).ok().and_then(|x| x.as_f64())
}
pub fn get_array_buffer(v: &JsValue, k: &str) -> Option<js_sys::ArrayBuffer> {
    Reflect::get(v, &k.into()).ok().and_then(|x| x.dyn_into().ok())
}
pub fn blob_of(buf: &js_sys::ArrayBuffer) -> Option<Blob> {
    let parts = Array::of1(buf);
    Blob::new_with_buffer_source_sequence(&parts).ok()
}
pub fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}
pub fn go(url: &str) {
    if let Some(w) = web_sys::window() {
        let _ = w.location().set_href(url);
    }
}
pub fn input_file(ev: &web_sys::Event) -> Option<web_sys::File> {
    let input: web_sys::HtmlInputElement = ev.target()?.dyn_into().ok()?;
    let f = input.files()?.get(0);
    input.set_value("");
    f
}

pub fn start_worker(on_message: impl Fn(String, JsValue) + 'static) -> Result<Worker, String> {
    let opts = WorkerOptions::new();
    opts.set_type(WorkerType::Module);
    let w = Worker::new_with_options("/deid-worker.js", &opts)
        .map_err(|_| "This browser cannot run the de-identification worker.".to_string())?;
    let cb = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let data = ev.data();
        let kind = get_str(&data, "type").unwrap_or_default();
        on_message(kind, data);
    });
    w.set_onmessage(Some(cb.as_ref().unchecked_ref()));
    cb.forget();
    let on_err = Closure::<dyn FnMut(web_sys::Event)>::new(move |_ev: web_sys::Event| {
        web_sys::console::error_1(&"de-identification worker failed to load".into());
    });
    w.set_onerror(Some(on_err.as_ref().unchecked_ref()));
    on_err.forget();
    Ok(w)
}

pub fn post(w: &Worker, kind: &str, obj: Option<(&str, &JsValue)>, num: Option<(&str, f64)>) {
    let msg = Object::new();
    let _ = Reflect::set(&msg, &"type".into(), &kind.into());
    if let Some((k, v)) = obj {
        let _ = Reflect::set(&msg, &k.into(), v);
    }
    if let Some((k, v)) = num {
        let _ = Reflect::set(&msg, &k.into(), &v.into());
    }
    let _ = w.post_message(&msg);
}

fn sleep(ms: i32) -> impl Future<Output = ()> {
    let p = Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    async move {
        let _ = JsFuture::from(p).await;
    }
}

/// One request; resolves with (status, body) — status 0 when the connection failed.
async fn xhr(
    method: &str,
    url: &str,
    csrf: &str,
    body: Option<Body<'_>>,
    on_progress: Option<Rc<dyn Fn(f64)>>,
) -> (u16, String) {
    let Ok(x) = XmlHttpRequest::new() else {
        return (0, String::new());
    };
    if x.open_with_async(method, url, true).is_err() {
        return (0, String::new());
    }
    let _ = x.set_request_header("x-csrf-token", csrf);
    // `loadend` fires after success, error, abort and timeout alike
    let done = Promise::new(&mut |resolve, _reject| {
        let onloadend = Closure::once_into_js(move || {
            let _ = resolve.call0(&JsValue::NULL);
        });
        x.set_onloadend(Some(onloadend.unchecked_ref()));
    });
    // byte-level progress of the request body
    let _progress_cb = on_progress.map(|f| {
        let cb = Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |ev: web_sys::ProgressEvent| f(ev.loaded()));
        if let Ok(up) = x.upload() {
            up.set_onprogress(Some(cb.as_ref().unchecked_ref()));
        }
        cb
    });
    let sent = match body {
        Some(Body::Json(s)) => {
            let _ = x.set_request_header("content-type", "application/json");
            x.send_with_opt_str(Some(s))
        }
        Some(Body::Blob(b)) => {
            let _ = x.set_request_header("content-type", "application/octet-stream");
            x.send_with_opt_blob(Some(b))
        }
        None => x.send(),
    };
    if sent.is_err() {
        return (0, String::new());
    }
    let _ = JsFuture::from(done).await;
    if let Ok(up) = x.upload() {
        up.set_onprogress(None);
    }
    let status = x.status().unwrap_or(0);
    let text = x.response_text().ok().flatten().unwrap_or_default();
    (status, text)
}

enum Body<'a> {
    Json(&'a str),
    Blob(&'a Blob),
}

#[derive(Deserialize)]
struct Status {
    id: String,
    chunk_size: f64,
    chunks: u32,
    received: Vec<u32>,
}

#[derive(Deserialize)]
struct Completed {
    url: String,
}

fn error_text(status: u16, body: &str) -> String {
    match serde_json::from_str::<super::ErrorView>(body) {
        Ok(e) if !e.message.is_empty() => {
            let _ = e.code;
            e.message
        }
        _ if status == 403 => "The page has expired. Please reload it and try again.".into(),
        _ if status == 413 => "The file is too large.".into(),
        _ => "The upload failed. Please try again.".into(),
    }
}

/// Chunked upload with resume: after a failed chunk the server's list of acknowledged
/// chunks is fetched again and only the missing ones are sent. Returns the scan's URL.
pub async fn upload(
    blob: &Blob,
    csrf: &str,
    chunk: f64,
    progress: impl Fn(f64, f64) + 'static,
) -> Result<String, String> {
    let progress: Rc<dyn Fn(f64, f64)> = Rc::new(progress);
    let total = blob.size();
    let create = serde_json::json!({
        "size": total as u64,
        "chunk_size": chunk as u64,
    })
    .to_string();
    let (st, body) = xhr("POST", "/uploads", csrf, Some(Body::Json(&create)), None).await;
    if st != 201 {
        return Err(if st == 0 {
            "The server could not be reached.".into()
        } else {
            error_text(st, &body)
        });
    }
    let mut status: Status =
        serde_json::from_str(&body).map_err(|_| "Unexpected answer from the server.".to_string())?;
    let url_base = format!("/uploads/{}", status.id);
    let mut failures = 0;
    loop {
        let chunk_size = status.chunk_size;
        let acked = |s: &Status| -> f64 {
            s.received
                .iter()
                .map(|i| (total - f64::from(*i) * s.chunk_size).min(s.chunk_size))
                .sum()
        };
        let mut done_bytes = acked(&status);
        progress(done_bytes, total);
        let missing: Vec<u32> = (0..status.chunks).filter(|i| !status.received.contains(i)).collect();
        if missing.is_empty() {
            break;
        }
        let mut failed = None;
        for i in missing {
            let start = f64::from(i) * chunk_size;
            let end = (start + chunk_size).min(total);
            let Ok(part) = blob.slice_with_f64_and_f64(start, end) else {
                return Err("The file could not be read.".into());
            };
            let base = done_bytes;
            let p = progress.clone();
            let report: Rc<dyn Fn(f64)> = Rc::new(move |loaded: f64| p(base + loaded.min(end - start), total));
            let (st, body) = xhr(
                "PUT",
                &format!("{url_base}/chunks/{i}"),
                csrf,
                Some(Body::Blob(&part)),
                Some(report),
            )
            .await;
            if st == 200 {
                done_bytes += end - start;
                progress(done_bytes, total);
            } else {
                failed = Some((st, body));
                break;
            }
        }
        match failed {
            None => {
                // confirm with the server what it holds
                let (st, body) = xhr("GET", &url_base, csrf, None, None).await;
                if st == 200
                    && let Ok(s) = serde_json::from_str::<Status>(&body)
                {
                    status = s;
                }
                if status.received.len() as u32 == status.chunks {
                    break;
                }
            }
            Some((st, body)) if st != 0 && st < 500 && st != 408 && st != 429 => {
                return Err(error_text(st, &body));
            }
            Some(_) => {
                failures += 1;
                if failures > 8 {
                    return Err("The connection keeps failing. Please try again later.".into());
                }
                sleep(500 * failures).await;
                // resume from what the server acknowledged
                let (st, body) = xhr("GET", &url_base, csrf, None, None).await;
                if st == 200 {
                    if let Ok(s) = serde_json::from_str::<Status>(&body) {
                        status = s;
                    }
                } else if st != 0 {
                    return Err(error_text(st, &body));
                }
            }
        }
    }
    progress(total, total);
    let (st, body) = xhr("POST", &format!("{url_base}/complete"), csrf, None, None).await;
    if st == 201 {
        serde_json::from_str::<Completed>(&body)
            .map(|c| c.url)
            .map_err(|_| "Unexpected answer from the server.".into())
    } else if st == 0 {
        Err("The server could not be reached.".into())
    } else {
        Err(error_text(st, &body))
    }
}
