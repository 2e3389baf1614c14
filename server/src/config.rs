//! One typed configuration for every `neurovol` command.
//!
//! Sources, later ones winning: embedded defaults → optional TOML file (`NEUROVOL_CONFIG`) →
//! environment variables. The defaults run the whole product on one machine with no set-up:
//! SQLite under the data directory, a local object store, a local CPU worker.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct Config {
    /// Every piece of state the server keeps (database file, objects, temp files) lives here.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `None` means the embedded SQLite file `<data_dir>/neurovol.db`.
    pub database_url: Option<String>,
    /// Folder laid out like `shared/`: `models/`, `normative/`.
    pub assets_dir: PathBuf,
    /// Built site (hydrate WASM, CSS, public files).
    pub site_root: PathBuf,
    /// Where users reach the app; decides `Secure` cookies and the allowed `Origin`.
    pub public_url: String,
    pub session_days: u32,
    pub login_max_failures_per_account: u32,
    pub login_max_failures_per_ip: u32,
    pub login_window_secs: u64,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted reverse proxy).
    pub trust_forwarded_for: bool,
    /// Secret for the local object store's signed URLs (`NEUROVOL_OBJECT_URL_KEY`, ≥ 32
    /// characters); `None`: random, persisted under `<data_dir>/secrets/` on first use.
    pub object_url_key: Option<Secret>,
    /// Base of signed object URLs as the worker reaches the app
    /// (`NEUROVOL_OBJECT_URL_BASE`); `None`: `public_url`.
    pub object_url_base: Option<String>,
    /// RunPod serverless endpoint id (`NEUROVOL_RUNPOD_ENDPOINT_ID`). With the API key set,
    /// segmentation goes to RunPod; otherwise to the local worker.
    pub runpod_endpoint_id: Option<String>,
    /// RunPod API key (`NEUROVOL_RUNPOD_API_KEY`).
    pub runpod_api_key: Option<Secret>,
    /// RunPod API base (`NEUROVOL_RUNPOD_BASE_URL`, default `https://api.runpod.ai`).
    pub runpod_base_url: String,
    /// The local worker binary (`NEUROVOL_WORKER_BIN`); `None`: `neurovol-worker` beside
    /// this binary, else on `PATH`.
    pub worker_bin: Option<PathBuf>,
    /// S3/R2 object store (`NEUROVOL_S3_ENDPOINT`, `_BUCKET`, `_ACCESS_KEY_ID`,
    /// `_SECRET_ACCESS_KEY`, `_REGION` default `auto`). All of endpoint, bucket and keys set:
    /// objects go to S3; none set: the local folder `<data_dir>/objects`.
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<Secret>,
    pub s3_region: String,
    /// Jobs one server process runs at once (`NEUROVOL_PIPELINE_CONCURRENCY`, default 2;
    /// 0 disables the pipeline in this process).
    pub pipeline_concurrency: u32,
    /// A job's lease (`NEUROVOL_JOB_LEASE_SECS`, default 60): renewed every third of it
    /// while the job runs; a crashed process's jobs are picked up after it expires.
    pub job_lease_secs: u64,
    /// Attempts of one step before the scan fails (`NEUROVOL_JOB_MAX_ATTEMPTS`, default 6).
    pub job_max_attempts: u32,
    /// First retry delay, doubled per attempt up to 5 min (`NEUROVOL_JOB_BACKOFF_SECS`, default 5).
    pub job_backoff_secs: u64,
    /// Region model for the pipeline (`NEUROVOL_SEGMENT_MODEL`, default model21_104class).
    pub segment_model: String,
    /// Run mindgrab for the intracranial volume (`NEUROVOL_SEGMENT_BRAIN_MASK`, default true).
    pub segment_brain_mask: bool,
    /// Longest a segmentation may take before it is cancelled and retried
    /// (`NEUROVOL_SEGMENT_TIMEOUT_SECS`, default 1800).
    pub segment_timeout_secs: u64,
    /// The dcm2niix binary (`NEUROVOL_DCM2NIIX`, default `dcm2niix` on PATH).
    pub dcm2niix: PathBuf,
    /// Largest upload (`NEUROVOL_UPLOAD_MAX_BYTES`, default 1 GiB).
    pub upload_max_bytes: u64,
    /// Idle uploads older than this are removed (`NEUROVOL_UPLOAD_EXPIRY_SECS`, default 86400).
    pub upload_expiry_secs: u64,
    /// How often expired uploads are swept (`NEUROVOL_UPLOAD_SWEEP_SECS`, default 600).
    pub upload_sweep_secs: u64,
    /// Uploads one account may start per hour (`NEUROVOL_UPLOAD_CREATES_PER_HOUR`, default 30).
    pub upload_creates_per_hour: u32,
    /// Chunks one account may send per minute (`NEUROVOL_UPLOAD_CHUNKS_PER_MINUTE`, default
    /// 600: 8 MiB chunks, i.e. about 80 MB/s).
    pub upload_chunks_per_minute: u32,
    /// Google sign-in (OpenID Connect): the OAuth client id (`NEUROVOL_GOOGLE_CLIENT_ID`).
    /// With the secret set, the sign-in button is shown and `/auth/google*` answer;
    /// neither set: Google sign-in is off (404).
    pub google_client_id: Option<String>,
    /// The OAuth client secret (`NEUROVOL_GOOGLE_CLIENT_SECRET`).
    pub google_client_secret: Option<Secret>,
    /// The provider's exact issuer (`NEUROVOL_GOOGLE_ISSUER`, default
    /// `https://accounts.google.com`); its discovery document is
    /// `<issuer>/.well-known/openid-configuration`.
    pub google_issuer: String,
    /// The site calibration file (`NEUROVOL_CALIBRATION`, written by `neurovol calibrate`);
    /// `None`: percentiles use braincharts' training-site average. Read and validated at start
    /// by [`Config::load_site`].
    pub calibration: Option<PathBuf>,
}

/// Google's issuer: the `iss` its ID tokens carry, exactly.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// Google sign-in, configured ([`Config::google_settings`]).
#[derive(Debug, Clone)]
pub struct GoogleSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// `<public URL>/auth/google/callback`, registered with the provider.
    pub redirect_url: String,
}

/// A configured secret: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The TOML file's shape: every key optional, same names as the fields above.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    assets_dir: Option<PathBuf>,
    site_root: Option<PathBuf>,
    public_url: Option<String>,
    session_days: Option<u32>,
    login_max_failures_per_account: Option<u32>,
    login_max_failures_per_ip: Option<u32>,
    login_window_secs: Option<u64>,
    trust_forwarded_for: Option<bool>,
    object_url_key: Option<Secret>,
    object_url_base: Option<String>,
    runpod_endpoint_id: Option<String>,
    runpod_api_key: Option<Secret>,
    runpod_base_url: Option<String>,
    worker_bin: Option<PathBuf>,
    s3_endpoint: Option<String>,
    s3_bucket: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<Secret>,
    s3_region: Option<String>,
    pipeline_concurrency: Option<u32>,
    job_lease_secs: Option<u64>,
    job_max_attempts: Option<u32>,
    job_backoff_secs: Option<u64>,
    segment_model: Option<String>,
    segment_brain_mask: Option<bool>,
    segment_timeout_secs: Option<u64>,
    dcm2niix: Option<PathBuf>,
    upload_max_bytes: Option<u64>,
    upload_expiry_secs: Option<u64>,
    upload_sweep_secs: Option<u64>,
    upload_creates_per_hour: Option<u32>,
    upload_chunks_per_minute: Option<u32>,
    google_client_id: Option<String>,
    google_client_secret: Option<Secret>,
    google_issuer: Option<String>,
    calibration: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {name}: {message}")]
    Env { name: &'static str, message: String },
    #[error("cannot read the calibration file {path} (NEUROVOL_CALIBRATION): {source}")]
    CalibrationRead { path: PathBuf, source: std::io::Error },
    #[error("invalid calibration file {path} (NEUROVOL_CALIBRATION): {source}")]
    Calibration {
        path: PathBuf,
        source: norms::calibration::CalibrationError,
    },
    #[error(
        "the calibration file {path} (NEUROVOL_CALIBRATION) was learnt on scans segmented as {learnt_on}; \
         this server segments as {segments_as}: calibrate again on controls segmented as it does"
    )]
    CalibrationMethod {
        path: PathBuf,
        learnt_on: String,
        segments_as: String,
    },
}

impl Config {
    /// Reads the process environment (and the file it may name).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Same as [`Config::from_env`] with an injectable environment, for tests.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = match env("NEUROVOL_CONFIG") {
            Some(path) => {
                let path = PathBuf::from(path);
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path,
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };

        let data_dir = env("NEUROVOL_DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| "data".into());
        let listen = match env("LEPTOS_SITE_ADDR") {
            Some(v) => v.parse().map_err(|e: std::net::AddrParseError| ConfigError::Env {
                name: "LEPTOS_SITE_ADDR",
                message: e.to_string(),
            })?,
            None => file.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000))),
        };
        let database_url = env("NEUROVOL_DATABASE_URL")
            .or(file.database_url)
            .filter(|s| !s.is_empty());
        let assets_dir = env("NEUROVOL_ASSETS")
            .map(PathBuf::from)
            .or(file.assets_dir)
            .unwrap_or_else(|| "assets".into());
        let site_root = env("LEPTOS_SITE_ROOT")
            .map(PathBuf::from)
            .or(file.site_root)
            .unwrap_or_else(default_site_root);
        let public_url = env("NEUROVOL_PUBLIC_URL")
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();

        Ok(Config {
            data_dir,
            listen,
            database_url,
            assets_dir,
            site_root,
            public_url,
            session_days: parse_env(&env, "NEUROVOL_SESSION_DAYS")?
                .or(file.session_days)
                .unwrap_or(7),
            login_max_failures_per_account: parse_env(&env, "NEUROVOL_LOGIN_MAX_FAILURES_PER_ACCOUNT")?
                .or(file.login_max_failures_per_account)
                .unwrap_or(5),
            login_max_failures_per_ip: parse_env(&env, "NEUROVOL_LOGIN_MAX_FAILURES_PER_IP")?
                .or(file.login_max_failures_per_ip)
                .unwrap_or(20),
            login_window_secs: parse_env(&env, "NEUROVOL_LOGIN_WINDOW_SECS")?
                .or(file.login_window_secs)
                .unwrap_or(15 * 60),
            trust_forwarded_for: parse_flag(&env, "NEUROVOL_TRUST_FORWARDED_FOR")?
                .or(file.trust_forwarded_for)
                .unwrap_or(false),
            object_url_key: env("NEUROVOL_OBJECT_URL_KEY")
                .map(Secret)
                .or(file.object_url_key)
                .filter(|k| !k.0.is_empty()),
            object_url_base: env("NEUROVOL_OBJECT_URL_BASE")
                .or(file.object_url_base)
                .filter(|s| !s.is_empty())
                .map(|s| s.trim_end_matches('/').to_string()),
            runpod_endpoint_id: env("NEUROVOL_RUNPOD_ENDPOINT_ID")
                .or(file.runpod_endpoint_id)
                .filter(|s| !s.is_empty()),
            runpod_api_key: env("NEUROVOL_RUNPOD_API_KEY")
                .map(Secret)
                .or(file.runpod_api_key)
                .filter(|k| !k.0.is_empty()),
            runpod_base_url: env("NEUROVOL_RUNPOD_BASE_URL")
                .or(file.runpod_base_url)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "https://api.runpod.ai".into())
                .trim_end_matches('/')
                .to_string(),
            worker_bin: env("NEUROVOL_WORKER_BIN").map(PathBuf::from).or(file.worker_bin),
            s3_endpoint: env("NEUROVOL_S3_ENDPOINT")
                .or(file.s3_endpoint)
                .filter(|s| !s.is_empty()),
            s3_bucket: env("NEUROVOL_S3_BUCKET").or(file.s3_bucket).filter(|s| !s.is_empty()),
            s3_access_key_id: env("NEUROVOL_S3_ACCESS_KEY_ID")
                .or(file.s3_access_key_id)
                .filter(|s| !s.is_empty()),
            s3_secret_access_key: env("NEUROVOL_S3_SECRET_ACCESS_KEY")
                .map(Secret)
                .or(file.s3_secret_access_key)
                .filter(|k| !k.0.is_empty()),
            s3_region: env("NEUROVOL_S3_REGION")
                .or(file.s3_region)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "auto".into()),
            pipeline_concurrency: parse_env(&env, "NEUROVOL_PIPELINE_CONCURRENCY")?
                .or(file.pipeline_concurrency)
                .unwrap_or(2),
            job_lease_secs: parse_env(&env, "NEUROVOL_JOB_LEASE_SECS")?
                .or(file.job_lease_secs)
                .unwrap_or(60)
                .max(3),
            job_max_attempts: parse_env(&env, "NEUROVOL_JOB_MAX_ATTEMPTS")?
                .or(file.job_max_attempts)
                .unwrap_or(6)
                .max(1),
            job_backoff_secs: parse_env(&env, "NEUROVOL_JOB_BACKOFF_SECS")?
                .or(file.job_backoff_secs)
                .unwrap_or(5),
            segment_model: env("NEUROVOL_SEGMENT_MODEL")
                .or(file.segment_model)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| volumetry::ModelId::DEFAULT.folder().into()),
            segment_brain_mask: parse_flag(&env, "NEUROVOL_SEGMENT_BRAIN_MASK")?
                .or(file.segment_brain_mask)
                .unwrap_or(true),
            segment_timeout_secs: parse_env(&env, "NEUROVOL_SEGMENT_TIMEOUT_SECS")?
                .or(file.segment_timeout_secs)
                .unwrap_or(1800),
            dcm2niix: env("NEUROVOL_DCM2NIIX")
                .map(PathBuf::from)
                .or(file.dcm2niix)
                .unwrap_or_else(|| "dcm2niix".into()),
            upload_max_bytes: parse_env(&env, "NEUROVOL_UPLOAD_MAX_BYTES")?
                .or(file.upload_max_bytes)
                .unwrap_or(1 << 30)
                .max(1),
            upload_expiry_secs: parse_env(&env, "NEUROVOL_UPLOAD_EXPIRY_SECS")?
                .or(file.upload_expiry_secs)
                .unwrap_or(86_400)
                .max(1),
            upload_sweep_secs: parse_env(&env, "NEUROVOL_UPLOAD_SWEEP_SECS")?
                .or(file.upload_sweep_secs)
                .unwrap_or(600)
                .max(1),
            upload_creates_per_hour: parse_env(&env, "NEUROVOL_UPLOAD_CREATES_PER_HOUR")?
                .or(file.upload_creates_per_hour)
                .unwrap_or(30)
                .max(1),
            upload_chunks_per_minute: parse_env(&env, "NEUROVOL_UPLOAD_CHUNKS_PER_MINUTE")?
                .or(file.upload_chunks_per_minute)
                .unwrap_or(600)
                .max(1),
            google_client_id: env("NEUROVOL_GOOGLE_CLIENT_ID")
                .or(file.google_client_id)
                .filter(|s| !s.is_empty()),
            google_client_secret: env("NEUROVOL_GOOGLE_CLIENT_SECRET")
                .map(Secret::new)
                .or(file.google_client_secret)
                .filter(|s| !s.expose().is_empty()),
            google_issuer: env("NEUROVOL_GOOGLE_ISSUER")
                .or(file.google_issuer)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| GOOGLE_ISSUER.into()),
            calibration: env("NEUROVOL_CALIBRATION")
                .map(PathBuf::from)
                .or(file.calibration)
                .filter(|p| !p.as_os_str().is_empty()),
        })
    }

    /// Google sign-in's settings when it is configured; an error when only one of the
    /// client id and secret is given.
    pub fn google_settings(&self) -> Result<Option<GoogleSettings>, ConfigError> {
        match (&self.google_client_id, &self.google_client_secret) {
            (None, None) => Ok(None),
            (Some(client_id), Some(secret)) => Ok(Some(GoogleSettings {
                issuer: self.google_issuer.clone(),
                client_id: client_id.clone(),
                client_secret: secret.clone(),
                redirect_url: format!("{}/auth/google/callback", self.public_url.trim_end_matches('/')),
            })),
            _ => Err(ConfigError::Env {
                name: "NEUROVOL_GOOGLE_*",
                message: "set both NEUROVOL_GOOGLE_CLIENT_ID and NEUROVOL_GOOGLE_CLIENT_SECRET, or neither".into(),
            }),
        }
    }

    /// The normative site percentiles are computed for: the calibration file's, read and
    /// validated now (call it at start: a bad file is an error, never a silent fall-back), or
    /// braincharts' training-site average when no file is configured.
    pub fn load_site(&self) -> Result<norms::Site, ConfigError> {
        let Some(path) = &self.calibration else {
            return Ok(norms::Site::TrainingAverage);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::CalibrationRead {
            path: path.clone(),
            source,
        })?;
        let calibration = norms::Calibration::from_json(&text).map_err(|source| ConfigError::Calibration {
            path: path.clone(),
            source,
        })?;
        Ok(calibration.site())
    }

    /// [`Config::load_site`], refusing a calibration learnt on scans segmented otherwise than
    /// this configuration segments them (its model, and labels refined or not).
    pub fn load_site_for_pipeline(&self) -> Result<norms::Site, ConfigError> {
        let site = self.load_site()?;
        let model = volumetry::ModelId::parse(&self.segment_model).map_err(|e| ConfigError::Env {
            name: "NEUROVOL_SEGMENT_MODEL",
            message: e.to_string(),
        })?;
        let labelling = volumetry::Labelling::drawn(volumetry::Labelling::Refined, model, self.segment_brain_mask);
        match &site {
            norms::Site::Calibrated(c) if !site.fits(model.folder(), labelling.as_str()) => {
                Err(ConfigError::CalibrationMethod {
                    path: self.calibration.clone().unwrap_or_default(),
                    learnt_on: c.measured_by.as_ref().map_or_else(String::new, |m| m.to_string()),
                    segments_as: format!("{model}, {} labels", labelling.as_str()),
                })
            }
            _ => Ok(site),
        }
    }

    /// The database URL actually used: the configured one or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("neurovol.db").display()),
        }
    }

    pub fn uses_postgres(&self) -> bool {
        self.database_url.as_deref().is_some_and(|u| u.starts_with("postgres"))
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }

    /// The S3/R2 settings when the S3 store is configured; an error names what is missing
    /// when only some of its settings are given.
    pub fn s3_settings(&self) -> Result<Option<crate::object_store::S3Settings>, ConfigError> {
        let parts = (
            &self.s3_endpoint,
            &self.s3_bucket,
            &self.s3_access_key_id,
            &self.s3_secret_access_key,
        );
        match parts {
            (None, None, None, None) => Ok(None),
            (Some(endpoint), Some(bucket), Some(key_id), Some(secret)) => Ok(Some(crate::object_store::S3Settings {
                endpoint: endpoint.clone(),
                bucket: bucket.clone(),
                region: self.s3_region.clone(),
                access_key_id: key_id.clone(),
                secret_access_key: secret.expose().to_string(),
                force_path_style: true,
            })),
            _ => Err(ConfigError::Env {
                name: "NEUROVOL_S3_*",
                message: "set all of NEUROVOL_S3_ENDPOINT, NEUROVOL_S3_BUCKET, NEUROVOL_S3_ACCESS_KEY_ID and NEUROVOL_S3_SECRET_ACCESS_KEY, or none".into(),
            }),
        }
    }

    /// Where segmentation jobs go: RunPod when its endpoint id and key are configured,
    /// else the local worker child process.
    pub fn segmenter_backend(&self) -> crate::segmenter::Backend {
        use crate::segmenter::{Backend, LocalWorkerSettings, default_worker_binary};
        match (&self.runpod_endpoint_id, &self.runpod_api_key) {
            (Some(endpoint_id), Some(key)) => Backend::RunPod {
                base_url: self.runpod_base_url.clone(),
                endpoint_id: endpoint_id.clone(),
                api_key: key.expose().to_string(),
            },
            _ => Backend::Local(LocalWorkerSettings::new(
                self.worker_bin.clone().unwrap_or_else(default_worker_binary),
                self.assets_dir.clone(),
            )),
        }
    }
}

fn parse_env<T: std::str::FromStr>(
    env: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    env(name)
        .map(|v| {
            v.trim().parse::<T>().map_err(|e| ConfigError::Env {
                name,
                message: e.to_string(),
            })
        })
        .transpose()
}

/// A yes/no setting: true/false, 1/0, yes/no, on/off.
fn parse_flag(env: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<Option<bool>, ConfigError> {
    env(name)
        .map(|v| match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            other => Err(ConfigError::Env {
                name,
                message: format!("expected true or false, not {other:?}"),
            }),
        })
        .transpose()
}

/// The build script writes the site next to the binary's profile folder
/// (`<target>/site` beside `<target>/release/neurovol`); fall back to `target/site`.
fn default_site_root() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(|p| p.join("site")))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| "target/site".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(move |k| map.get(k).cloned())
    }

    #[test]
    fn embedded_defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert!(c.database_url.is_none());
        assert_eq!(c.effective_database_url(), "sqlite://data/neurovol.db?mode=rwc");
        assert!(!c.uses_postgres());
        assert!(!c.secure_cookies());
        assert_eq!(c.public_url, "http://127.0.0.1:3000");
    }

    #[test]
    fn google_sign_in_needs_both_client_id_and_secret() {
        let off = cfg(&[]).unwrap();
        assert!(off.google_settings().unwrap().is_none());
        assert_eq!(off.google_issuer, GOOGLE_ISSUER);
        let half = cfg(&[("NEUROVOL_GOOGLE_CLIENT_ID", "id.apps.googleusercontent.com")]).unwrap();
        assert!(matches!(
            half.google_settings(),
            Err(ConfigError::Env {
                name: "NEUROVOL_GOOGLE_*",
                ..
            })
        ));
        let on = cfg(&[
            ("NEUROVOL_GOOGLE_CLIENT_ID", "id.apps.googleusercontent.com"),
            ("NEUROVOL_GOOGLE_CLIENT_SECRET", "a-secret"),
            ("NEUROVOL_PUBLIC_URL", "https://nv.example/"),
        ])
        .unwrap();
        let g = on.google_settings().unwrap().unwrap();
        assert_eq!(g.issuer, "https://accounts.google.com");
        assert_eq!(g.redirect_url, "https://nv.example/auth/google/callback");
        assert!(!format!("{g:?}").contains("a-secret"), "the secret is never printed");
    }

    #[test]
    fn env_overrides_file() {
        let dir = std::env::temp_dir().join(format!("nv-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("neurovol.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/nv\"\nsession_days = 3\npublic_url = \"https://nv.example/\"\n",
        )
        .unwrap();
        let c = cfg(&[
            ("NEUROVOL_CONFIG", file.to_str().unwrap()),
            ("NEUROVOL_SESSION_DAYS", "9"),
        ])
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/nv"));
        assert_eq!(c.session_days, 9);
        assert_eq!(c.public_url, "https://nv.example");
        assert!(c.secure_cookies());
    }

    #[test]
    fn segmenter_settings() {
        let c = cfg(&[]).unwrap();
        assert!(c.runpod_endpoint_id.is_none() && c.runpod_api_key.is_none() && c.object_url_key.is_none());
        assert_eq!(c.runpod_base_url, "https://api.runpod.ai");
        let c = cfg(&[
            ("NEUROVOL_RUNPOD_ENDPOINT_ID", "abc123"),
            ("NEUROVOL_RUNPOD_API_KEY", "rp_secret_value"),
            ("NEUROVOL_RUNPOD_BASE_URL", "http://127.0.0.1:9/"),
            ("NEUROVOL_OBJECT_URL_KEY", "k"),
            ("NEUROVOL_OBJECT_URL_BASE", "http://10.0.0.2:3000/"),
            ("NEUROVOL_WORKER_BIN", "/opt/nv/neurovol-worker"),
        ])
        .unwrap();
        assert_eq!(c.runpod_endpoint_id.as_deref(), Some("abc123"));
        assert_eq!(c.runpod_api_key.as_ref().map(Secret::expose), Some("rp_secret_value"));
        assert_eq!(c.runpod_base_url, "http://127.0.0.1:9");
        assert_eq!(c.object_url_base.as_deref(), Some("http://10.0.0.2:3000"));
        assert_eq!(c.worker_bin, Some(PathBuf::from("/opt/nv/neurovol-worker")));
        // secrets never show in Debug output
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("rp_secret_value"), "{dbg}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = cfg(&[("LEPTOS_SITE_ADDR", "not-an-addr")]).unwrap_err();
        assert!(err.to_string().contains("LEPTOS_SITE_ADDR"), "{err}");
        let err = cfg(&[("NEUROVOL_SESSION_DAYS", "many")]).unwrap_err();
        assert!(err.to_string().contains("NEUROVOL_SESSION_DAYS"), "{err}");
    }

    #[test]
    fn calibration_file_is_read_and_checked_at_start() {
        let c = cfg(&[]).unwrap();
        assert!(c.calibration.is_none());
        assert_eq!(c.load_site().unwrap(), norms::Site::TrainingAverage);

        let dir = std::env::temp_dir().join(format!("nv-config-test3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("calibration.json");
        let missing = cfg(&[("NEUROVOL_CALIBRATION", file.to_str().unwrap())]).unwrap();
        assert!(matches!(missing.load_site(), Err(ConfigError::CalibrationRead { .. })));

        // 20 controls at the model's mean ± 1 SD plus 0.5 SD: a valid calibration
        let norms = norms::Norms::embedded();
        let controls: Vec<_> = (0..20)
            .map(|i| {
                let (age, sex) = (
                    30.0 + i as f64,
                    if i % 2 == 0 {
                        norms::Sex::Female
                    } else {
                        norms::Sex::Male
                    },
                );
                let z = 0.5 + if i % 4 < 2 { 1.0 } else { -1.0 };
                let volumes = ["Left-Hippocampus", "Right-Hippocampus"]
                    .iter()
                    .map(|r| {
                        let p = norms.predict(r, sex, age, &norms::Site::TrainingAverage).unwrap();
                        (r.to_string(), norms.model(r).unwrap().unwarp(p.mu_w + z * p.sigma_w))
                    })
                    .collect();
                norms::calibration::Control { age, sex, volumes }
            })
            .collect();
        let refined = norms::MeasuredBy {
            model: "model21_104class".into(),
            labelling: "refined".into(),
        };
        let calibration = norms::Calibration::estimate(norms, &controls, "Site A", refined).unwrap();
        std::fs::write(&file, calibration.to_json_pretty()).unwrap();
        let toml = dir.join("neurovol.toml");
        std::fs::write(&toml, format!("calibration = {:?}\n", file.to_str().unwrap())).unwrap();
        let c = cfg(&[("NEUROVOL_CONFIG", toml.to_str().unwrap())]).unwrap();
        assert_eq!(c.calibration.as_deref(), Some(file.as_path()));
        let site = c.load_site().unwrap();
        assert_eq!(norms::calibration::describe(&site), "Site A (20 controls)");
        let p = norms
            .percentile("Left-Hippocampus", norms::Sex::Female, 40.0, 4000.0, &site)
            .unwrap();
        assert!(p.site_calibrated);
        // the pipeline takes it where it segments as the controls were (the defaults: the
        // default model, with the brain mask, so refined labels), and refuses it otherwise
        assert_eq!(c.load_site_for_pipeline().unwrap(), site);
        let unmasked = cfg(&[
            ("NEUROVOL_CONFIG", toml.to_str().unwrap()),
            ("NEUROVOL_SEGMENT_BRAIN_MASK", "0"),
        ])
        .unwrap();
        let err = unmasked.load_site_for_pipeline().unwrap_err();
        assert!(
            err.to_string().contains(
                "learnt on scans segmented as model21_104class, refined labels; this server segments as model21_104class, upstream labels"
            ),
            "{err}"
        );

        std::fs::write(
            &file,
            calibration.to_json_pretty().replace(norms::calibration::FORMAT, "v0"),
        )
        .unwrap();
        let err = c.load_site().unwrap_err();
        assert!(matches!(err, ConfigError::Calibration { .. }), "{err}");
        assert!(err.to_string().contains("NEUROVOL_CALIBRATION"), "{err}");
        // an empty setting means none
        let c = cfg(&[
            ("NEUROVOL_CONFIG", toml.to_str().unwrap()),
            ("NEUROVOL_CALIBRATION", ""),
        ])
        .unwrap();
        assert!(c.calibration.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("nv-config-test2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("neurovol.toml");
        std::fs::write(&file, "databse_url = \"typo\"\n").unwrap();
        let err = cfg(&[("NEUROVOL_CONFIG", file.to_str().unwrap())]).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }
}
