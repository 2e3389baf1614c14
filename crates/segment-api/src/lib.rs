//! The segmentation job's JSON, written once for both ends: `neurovol-worker`, which serves
//! RunPod's serverless job API, and the server's client (`server::segmenter`), which talks
//! to that worker or to a real RunPod endpoint (docs/segmentation-worker.md).
//!
//! ```text
//! POST /v2/{endpoint}/run          RunRequest {input: JobInput, policy?} → JobReport {id, status}
//! GET  /v2/{endpoint}/status/{id}  → JobReport {id, status, delayTime, executionTime,
//!                                               output? (COMPLETED), error? (FAILED, TIMED_OUT)}
//! POST /v2/{endpoint}/cancel/{id}  → JobReport {id, status}
//! any refusal (4xx, 5xx)           → ErrorReply {error}
//! ```
//!
//! Invariants: pure data and [`describe_error`], no HTTP and no I/O; the field names are
//! RunPod's (camelCase where RunPod uses it); readers ignore fields they do not know and
//! default the optional ones, so either end can grow; nothing here prints a URL (pre-signed
//! URLs carry their signature: they are credentials).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The region model when a job names none (a `volumetry::ModelId` name).
pub const DEFAULT_MODEL: &str = "model21_104class";

/// `input` of a `/run` request. URLs are pre-signed: GET for the input, PUT for the outputs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInput {
    /// The de-identified NIfTI (`.nii` or `.nii.gz`).
    pub nifti_url: String,
    /// Where the label NIfTI goes (gzip-compressed, on the input's grid).
    pub labels_url: String,
    /// Where `volumes.json` goes.
    pub volumes_url: String,
    /// Region model; missing or null: [`DEFAULT_MODEL`]. The worker checks the name.
    #[serde(default = "default_model", deserialize_with = "model_or_default")]
    pub model: String,
    /// Also run mindgrab, for the intracranial volume; missing or null: true.
    #[serde(default = "yes", deserialize_with = "true_unless_false")]
    pub brain_mask: bool,
    /// The input is a defaced head: normalise its intensities as these numbers, measured on
    /// the head before defacing, say (the labels then match the whole head's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intensity: Option<volumetry::IntensityReference>,
}

impl JobInput {
    /// A job with the default model and the brain mask.
    pub fn new(nifti_url: String, labels_url: String, volumes_url: String) -> JobInput {
        JobInput {
            nifti_url,
            labels_url,
            volumes_url,
            model: DEFAULT_MODEL.into(),
            brain_mask: true,
            intensity: None,
        }
    }
}

impl std::fmt::Debug for JobInput {
    // Never print the URLs: their query strings are credentials (logs print inputs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobInput")
            .field("model", &self.model)
            .field("brain_mask", &self.brain_mask)
            .field("intensity", &self.intensity)
            .finish_non_exhaustive()
    }
}

fn default_model() -> String {
    DEFAULT_MODEL.into()
}

fn yes() -> bool {
    true
}

fn model_or_default<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(default_model))
}

fn true_unless_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

/// The body of `POST /run`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRequest {
    /// `None` only in a request that left it out (the worker refuses it).
    #[serde(default)]
    pub input: Option<JobInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// RunPod's per-job `policy`; only the execution timeout is used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Milliseconds; the worker takes the smaller of this and its own limit.
    #[serde(rename = "executionTimeout", default, skip_serializing_if = "Option::is_none")]
    pub execution_timeout_ms: Option<u64>,
}

/// A job's status, by RunPod's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    InQueue,
    InProgress,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::InQueue | Status::InProgress)
    }
}

/// The answer of `/run`, `/status/{id}` and `/cancel/{id}` (`/run` and `/cancel` carry only
/// `id` and `status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    #[serde(default)]
    pub id: String,
    pub status: Status,
    /// Time in the queue, ms.
    #[serde(
        rename = "delayTime",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "millis"
    )]
    pub delay_time_ms: Option<u64>,
    /// Time running, ms.
    #[serde(
        rename = "executionTime",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "millis"
    )]
    pub execution_time_ms: Option<u64>,
    /// A [`JobOutput`] when COMPLETED. Kept as JSON here because RunPod passes on whatever
    /// its handler returned: read it with [`JobReport::job_output`], so that an odd output
    /// beside another status never makes the status itself unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why a job FAILED or TIMED_OUT, in one line without a URL.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "error_text")]
    pub error: Option<String>,
}

impl JobReport {
    /// `{id, status}`, as `/run` and `/cancel` answer.
    pub fn new(id: impl Into<String>, status: Status) -> JobReport {
        JobReport {
            id: id.into(),
            status,
            delay_time_ms: None,
            execution_time_ms: None,
            output: None,
            error: None,
        }
    }

    /// The output as a [`JobOutput`]: `None` when there is none, an error when it is not one.
    pub fn job_output(&self) -> Option<Result<JobOutput, serde_json::Error>> {
        self.output.as_ref().map(JobOutput::deserialize)
    }
}

/// RunPod documents whole milliseconds; any other number is rounded, anything else dropped,
/// so that a timing never makes a status unreadable.
fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0).round() as u64))))
}

/// RunPod's `error` is a string; anything else is kept as its JSON text.
fn error_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

/// `output` of a COMPLETED job: what the worker did and how long each step took. Only
/// `model` is required of a reader; the rest default (an older or other worker may send
/// less), and unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobOutput {
    pub model: String,
    #[serde(default)]
    pub engine: String,
    #[serde(default)]
    pub labels_bytes: u64,
    #[serde(default)]
    pub labels_sha256: String,
    #[serde(default)]
    pub volumes_bytes: u64,
    #[serde(default)]
    pub volumes_sha256: String,
    #[serde(default)]
    pub input_bytes: u64,
    #[serde(default)]
    pub dims: [usize; 3],
    #[serde(default)]
    pub timings: JobTimings,
}

/// Seconds per step of a job; a step a report leaves out reads as 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobTimings {
    pub download_s: f64,
    /// Waiting for the device (another inference running).
    pub wait_s: f64,
    pub conform_s: f64,
    pub model_s: f64,
    pub mask_s: f64,
    pub post_s: f64,
    /// Conform + model + mask + post, as the worker measured the whole call.
    pub segment_s: f64,
    pub upload_s: f64,
    pub total_s: f64,
}

impl JobTimings {
    /// One timing by its JSON name (`"total_s"`, …).
    pub fn get(&self, name: &str) -> Option<&f64> {
        Some(match name {
            "download_s" => &self.download_s,
            "wait_s" => &self.wait_s,
            "conform_s" => &self.conform_s,
            "model_s" => &self.model_s,
            "mask_s" => &self.mask_s,
            "post_s" => &self.post_s,
            "segment_s" => &self.segment_s,
            "upload_s" => &self.upload_s,
            "total_s" => &self.total_s,
            _ => return None,
        })
    }
}

/// The body of every refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// One line from an error and its causes (`source()`), for a job's reason or a log: each
/// cause not already said is added after ": ", and any part that holds a URL (`://`) is
/// left out. For an HTTP client's error, drop its URL first (reqwest: `without_url`), so
/// that the first part is kept.
pub fn describe_error(e: &dyn std::error::Error) -> String {
    let mut line = String::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let part = err.to_string();
        if !part.contains("://") && !line.contains(&part) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&part);
        }
        next = err.source();
    }
    if line.is_empty() {
        "no details (they named a URL)".into()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn input_debug_hides_urls() {
        let i = JobInput::new(
            "http://h/a?sig=SECRET".into(),
            "http://h/b?sig=SECRET".into(),
            "http://h/c?sig=SECRET".into(),
        );
        assert!(!format!("{i:?}").contains("SECRET"));
    }

    #[test]
    fn input_model_and_brain_mask_default_when_missing_or_null() {
        let urls = json!({"nifti_url": "a", "labels_url": "b", "volumes_url": "c"});
        let i: JobInput = serde_json::from_value(urls.clone()).unwrap();
        assert_eq!(i, JobInput::new("a".into(), "b".into(), "c".into()));
        let mut nulls = urls.clone();
        nulls["model"] = Value::Null;
        nulls["brain_mask"] = Value::Null;
        assert_eq!(serde_json::from_value::<JobInput>(nulls).unwrap(), i);
        let mut given = urls;
        given["model"] = json!("model18cls");
        given["brain_mask"] = json!(false);
        let g: JobInput = serde_json::from_value(given).unwrap();
        assert_eq!((g.model.as_str(), g.brain_mask), ("model18cls", false));
        assert!(serde_json::from_value::<JobInput>(json!({"nifti_url": "a"})).is_err());
    }

    #[test]
    fn run_request_is_runpods() {
        let mut r = RunRequest {
            input: Some(JobInput::new("a".into(), "b".into(), "c".into())),
            policy: None,
        };
        let input = json!({"nifti_url": "a", "labels_url": "b", "volumes_url": "c",
                           "model": "model21_104class", "brain_mask": true});
        assert_eq!(serde_json::to_value(&r).unwrap(), json!({ "input": input }));
        r.policy = Some(Policy {
            execution_timeout_ms: Some(300),
        });
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"input": input, "policy": {"executionTimeout": 300}})
        );
        let back: RunRequest = serde_json::from_value(json!({"nothing": 1})).unwrap();
        assert!(back.input.is_none() && back.policy.is_none());
    }

    #[test]
    fn reports_are_runpods() {
        let r = JobReport::new("j1", Status::InQueue);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id": "j1", "status": "IN_QUEUE"})
        );
        for (s, name) in [
            (Status::InProgress, "IN_PROGRESS"),
            (Status::Completed, "COMPLETED"),
            (Status::Failed, "FAILED"),
            (Status::Cancelled, "CANCELLED"),
            (Status::TimedOut, "TIMED_OUT"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(name));
        }
        let full = JobReport {
            delay_time_ms: Some(5),
            execution_time_ms: Some(7),
            error: Some("bad input".into()),
            ..JobReport::new("j2", Status::Failed)
        };
        assert_eq!(
            serde_json::to_value(&full).unwrap(),
            json!({"id": "j2", "status": "FAILED", "delayTime": 5, "executionTime": 7,
                   "error": "bad input"})
        );
        // a reader is lenient where RunPod may differ
        let r: JobReport = serde_json::from_value(json!({"status": "FAILED", "error": {"x": 1},
            "delayTime": 2.6, "executionTime": "soon", "workerId": "w"}))
        .unwrap();
        assert_eq!(r.error.as_deref(), Some(r#"{"x":1}"#));
        assert_eq!((r.delay_time_ms, r.execution_time_ms), (Some(3), None));
        assert!(serde_json::from_value::<JobReport>(json!({"status": "WEIRD"})).is_err());
        assert!(serde_json::from_value::<JobReport>(json!({"id": "x"})).is_err());
    }

    #[test]
    fn output_needs_only_a_model() {
        let r: JobReport = serde_json::from_value(json!({"status": "COMPLETED",
            "output": {"model": "m", "timings": {"total_s": 1.5, "gpu_s": 1.0}}}))
        .unwrap();
        let out = r.job_output().unwrap().unwrap();
        assert_eq!(out.model, "m");
        assert_eq!(out.timings.get("total_s"), Some(&1.5));
        assert_eq!(out.timings.get("gpu_s"), None);
        let bad: JobReport =
            serde_json::from_value(json!({"status": "COMPLETED", "output": {"engine": "cpu"}})).unwrap();
        assert!(bad.job_output().unwrap().is_err());
        // every timing name `get` knows is a field, and the other way round
        let names = serde_json::to_value(JobTimings::default()).unwrap();
        let names = names.as_object().unwrap();
        assert_eq!(names.len(), 9);
        assert!(names.keys().all(|k| JobTimings::default().get(k).is_some()));
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn error_text_has_every_cause_once_and_no_url() {
        let e = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "client error (Connect)",
                Some(Box::new(Layer(
                    "dns error for https://h/x?sig=SECRET",
                    Some(Box::new(Layer("client error (Connect)", None))),
                ))),
            ))),
        );
        assert_eq!(describe_error(&e), "error sending request: client error (Connect)");
        assert_eq!(
            describe_error(&Layer("GET http://h/?sig=1 failed", None)),
            "no details (they named a URL)"
        );
    }
}
