//! One job: download the NIfTI (size-limited), check it is a single 3D NIfTI, segment it on
//! a blocking thread (one inference at a time), upload the label NIfTI and volumes JSON.
//!
//! Everything stays in memory and is dropped when the job ends: the worker never writes
//! inputs or outputs to disk. No URL is ever logged or put into an error message (signed
//! URLs carry their signature in the query); errors name the step and the HTTP status.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use reqwest::Url;
use segment_api::{JobInput, JobOutput, JobTimings};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use volumetry::{ModelId, SegmentOptions};

/// What a job needs from the worker.
pub struct ExecContext {
    pub http: reqwest::Client,
    pub assets: PathBuf,
    pub max_input_bytes: u64,
    pub max_nifti_bytes: u64,
    /// One permit: one inference at a time on this device.
    pub inference: Arc<Semaphore>,
    /// Opened once at start (a GPU adapter is found, or the worker does not start).
    pub engine: Arc<dyn volumetry::Engine>,
}

fn parse_url(field: &str, s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|_| format!("input.{field} is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("input.{field} must be an http(s) URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("input.{field} must not carry credentials in the URL"));
    }
    Ok(url)
}

/// Runs one job to completion. Dropping the future abandons the job (cancel, timeout);
/// an inference already running finishes on its thread and still holds the device, so
/// the next job waits for it.
pub async fn run(ctx: &ExecContext, input: JobInput) -> Result<JobOutput, String> {
    let t0 = Instant::now();
    let model = ModelId::parse(&input.model).map_err(|e| e.to_string())?;
    let nifti_url = parse_url("nifti_url", &input.nifti_url)?;
    let labels_url = parse_url("labels_url", &input.labels_url)?;
    let volumes_url = parse_url("volumes_url", &input.volumes_url)?;
    let (brain_mask, intensity) = (input.brain_mask, input.intensity);
    drop(input);

    let bytes = download(&ctx.http, nifti_url, ctx.max_input_bytes).await?;
    let input_bytes = bytes.len() as u64;
    let download_s = t0.elapsed().as_secs_f64();
    // Validate before waiting for the device: a bad input fails at once.
    let max_nifti = ctx.max_nifti_bytes;
    let volume = tokio::task::spawn_blocking(move || check_nifti(&bytes, max_nifti))
        .await
        .map_err(|_| "the input check crashed".to_string())??;
    let dims = volume.dims;

    let t_wait = Instant::now();
    let permit = ctx
        .inference
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| "the worker is shutting down".to_string())?;
    let wait_s = t_wait.elapsed().as_secs_f64();
    let assets = ctx.assets.clone();
    let engine = ctx.engine.clone();
    let t_seg = Instant::now();
    let seg = tokio::task::spawn_blocking(move || {
        let _device = permit;
        let opts = SegmentOptions {
            model,
            brain_mask,
            intensity,
            engine: Some(engine),
            ..SegmentOptions::default()
        };
        let seg = volumetry::segment(&volume, &assets, &opts).map_err(|e| e.to_string())?;
        drop(volume);
        encode_outputs(&seg).map(|(labels, volumes)| {
            (
                labels,
                volumes,
                seg.timings.clone(),
                seg.engine.clone(),
                seg.model.clone(),
            )
        })
    })
    .await
    .map_err(|_| "the segmentation crashed".to_string())?;
    let (labels, volumes, timings, engine, model_name) = seg?;
    let segment_s = t_seg.elapsed().as_secs_f64();

    let t_up = Instant::now();
    let labels_sha256 = hex::encode(Sha256::digest(&labels));
    let volumes_sha256 = hex::encode(Sha256::digest(&volumes));
    let (labels_bytes, volumes_bytes) = (labels.len() as u64, volumes.len() as u64);
    upload(&ctx.http, labels_url, labels, "application/gzip", "label NIfTI").await?;
    upload(&ctx.http, volumes_url, volumes, "application/json", "volumes JSON").await?;
    let upload_s = t_up.elapsed().as_secs_f64();

    Ok(JobOutput {
        model: model_name,
        engine,
        labels_bytes,
        labels_sha256,
        volumes_bytes,
        volumes_sha256,
        input_bytes,
        dims,
        timings: JobTimings {
            download_s,
            wait_s,
            conform_s: timings.conform_s,
            model_s: timings.model_s,
            mask_s: timings.mask_s,
            post_s: timings.post_s,
            segment_s,
            upload_s,
            total_s: t0.elapsed().as_secs_f64(),
        },
    })
}

/// The label NIfTI and `volumes.json` exactly as `volumetry::write_outputs` (and so
/// `neurovol segment`) writes them: gzip level "fast", pretty JSON, percentiles null
/// (the server fills them from the norms crate; the worker never learns age or sex).
pub fn encode_outputs(seg: &volumetry::Segmentation) -> Result<(Vec<u8>, Vec<u8>), String> {
    let raw = volumetry::nifti::encode(&seg.labels_native);
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 8), flate2::Compression::fast());
    gz.write_all(&raw)
        .map_err(|e| format!("cannot compress the labels: {e}"))?;
    let labels = gz.finish().map_err(|e| format!("cannot compress the labels: {e}"))?;
    let vj = volumetry::volumes_json(&volumetry::report(seg));
    let volumes = serde_json::to_string_pretty(&vj)
        .map_err(|e| format!("cannot encode volumes: {e}"))?
        .into_bytes();
    Ok((labels, volumes))
}

/// Decompresses (with a size limit) and decodes the input; refuses anything that is not a
/// single 3D NIfTI-1 volume with a one-line reason.
pub fn check_nifti(bytes: &[u8], max_nifti_bytes: u64) -> Result<volumetry::Volume<f32>, String> {
    let refuse = |why: &str| format!("the input is not a single 3D NIfTI: {why}");
    let owned;
    let raw: &[u8] = if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .take(max_nifti_bytes.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|_| refuse("invalid gzip data"))?;
        if out.len() as u64 > max_nifti_bytes {
            return Err(format!(
                "the input is too large once decompressed (limit {max_nifti_bytes} bytes)"
            ));
        }
        owned = out;
        &owned
    } else {
        if bytes.len() as u64 > max_nifti_bytes {
            return Err(format!("the input is too large (limit {max_nifti_bytes} bytes)"));
        }
        bytes
    };
    let (h, _) = volumetry::nifti::parse_header(raw).map_err(|e| refuse(&strip(e)))?;
    if !(3..=4).contains(&h.dim[0]) || (h.dim[0] == 4 && h.dim[4] != 1) {
        let n = if h.dim[0] >= 4 { h.dim[4].max(0) } else { 1 };
        return Err(refuse(&format!(
            "it has {} dimensions{}",
            h.dim[0],
            if n > 1 {
                format!(" and {n} volumes")
            } else {
                String::new()
            }
        )));
    }
    volumetry::nifti::decode_f32(raw).map_err(|e| refuse(&strip(e)))
}

fn strip(e: volumetry::VolumetryError) -> String {
    let s = e.to_string();
    s.strip_prefix("unusable input: ").unwrap_or(&s).to_string()
}

/// Text of an error and its causes, without any URL.
fn describe_error(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let s = segment_api::describe_error(&e.without_url());
    if timeout { format!("timed out ({s})") } else { s }
}

/// "HTTP 403 (reason)" for a refused request; the reason is the S3 error code/message or
/// the first line of a short text body, and is omitted if it looks like it holds a URL.
async fn describe_refusal(resp: reqwest::Response) -> String {
    let status = resp.status();
    let mut body = Vec::new();
    let mut resp = resp;
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > 4096 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let between = |a: &str, b: &str| {
        text.find(a).and_then(|i| {
            text[i + a.len()..]
                .find(b)
                .map(|j| text[i + a.len()..i + a.len() + j].to_string())
        })
    };
    let reason = match (between("<Code>", "</Code>"), between("<Message>", "</Message>")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => text.lines().next().unwrap_or("").trim().to_string(),
    };
    let reason: String = reason.chars().filter(|c| !c.is_control()).take(200).collect();
    let unsafe_text = reason.contains("://") || reason.contains('?') || reason.contains('&') || reason.contains('=');
    if reason.is_empty() || unsafe_text {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {} ({reason})", status.as_u16())
    }
}

async fn download(http: &reqwest::Client, url: Url, max: u64) -> Result<Vec<u8>, String> {
    let mut resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot download the input: {}", describe_error(e)))?;
    if !resp.status().is_success() {
        return Err(format!(
            "the object store refused the input download: {}",
            describe_refusal(resp).await
        ));
    }
    let too_large = || format!("the input is too large (limit {max} bytes)");
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(resp.content_length().unwrap_or(0).min(max) as usize);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("the input download broke off: {}", describe_error(e)))?
    {
        if buf.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

async fn upload(http: &reqwest::Client, url: Url, body: Vec<u8>, content_type: &str, what: &str) -> Result<(), String> {
    let resp = http
        .put(url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot upload the {what}: {}", describe_error(e)))?;
    if !resp.status().is_success() {
        return Err(format!(
            "the object store refused the {what} upload: {}",
            describe_refusal(resp).await
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nifti(dims: [i16; 4], nd: i16) -> Vec<u8> {
        let mut v = volumetry::Volume {
            dims: [2, 2, 2],
            data: vec![1.0f32; 8],
            header: Default::default(),
        };
        v.header.pixdim = [1.0; 8];
        let mut b = volumetry::nifti::encode(&v);
        b[40..42].copy_from_slice(&nd.to_le_bytes());
        for (i, d) in dims.iter().enumerate() {
            b[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        b
    }

    #[test]
    fn refuses_what_is_not_one_3d_nifti() {
        assert!(check_nifti(&nifti([2, 2, 2, 1], 3), 1 << 20).is_ok());
        let e = check_nifti(b"hello, not an image", 1 << 20).unwrap_err();
        assert!(e.contains("not a single 3D NIfTI"), "{e}");
        let e = check_nifti(&nifti([2, 2, 2, 3], 4), 1 << 20).unwrap_err();
        assert!(e.contains("3 volumes"), "{e}");
        let e = check_nifti(&nifti([2, 2, 1, 1], 2), 1 << 20).unwrap_err();
        assert!(e.contains("2 dimensions"), "{e}");
        let e = check_nifti(&[0x1f, 0x8b, 0, 1, 2], 1 << 20).unwrap_err();
        assert!(e.contains("gzip"), "{e}");
    }

    #[test]
    fn gzip_bombs_are_cut_off() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 4 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        let e = check_nifti(&bomb, 1 << 20).unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn the_default_model_is_volumetrys() {
        let default = ModelId::parse(segment_api::DEFAULT_MODEL).unwrap();
        assert_eq!(default, SegmentOptions::default().model);
    }

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("f", "file:///etc/passwd").is_err());
        assert!(parse_url("f", "http://u:p@h/x").is_err());
        assert!(parse_url("f", "nonsense").is_err());
        assert!(parse_url("f", "https://h/x?sig=1").is_ok());
    }
}
