//! Worker configuration: command-line flags, each with an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gpu_engine::EngineKind;

/// `neurovol-worker`: serves the RunPod serverless job API (`/v2/{endpoint}/run`,
/// `/status/{id}`, `/cancel/{id}`, `/health`) and runs one segmentation at a time.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "neurovol-worker", version, about)]
pub struct WorkerConfig {
    /// Address to listen on. Port 0 picks a free port; the chosen address is printed on
    /// stdout as `neurovol-worker ready at http://ADDR`.
    #[arg(long, env = "NEUROVOL_WORKER_LISTEN", default_value = "127.0.0.1:8188")]
    pub listen: SocketAddr,
    /// Bearer key every request must carry (`Authorization: Bearer KEY`). Required.
    #[arg(long, env = "NEUROVOL_WORKER_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// The `{endpoint}` path segment this worker answers to.
    #[arg(long, env = "NEUROVOL_WORKER_ENDPOINT_ID", default_value = "local")]
    pub endpoint_id: String,
    /// Folder laid out like `shared/` (`models/`); default: volumetry's dev layout.
    #[arg(long, env = "NEUROVOL_ASSETS")]
    pub assets: Option<PathBuf>,
    /// Jobs that may wait in the queue (not counting the running one); more → 429.
    #[arg(long, env = "NEUROVOL_WORKER_QUEUE", default_value_t = 16)]
    pub queue_capacity: usize,
    /// Longest a job may run (download + inference + upload), in seconds (fractions
    /// allowed); a job may ask for less with `policy.executionTimeout` (ms).
    #[arg(long, env = "NEUROVOL_WORKER_JOB_TIMEOUT", default_value = "900", value_parser = parse_secs)]
    pub job_timeout: Duration,
    /// Largest input download, in bytes (compressed size as transferred).
    #[arg(long, env = "NEUROVOL_WORKER_MAX_INPUT_BYTES", default_value_t = 256 << 20)]
    pub max_input_bytes: u64,
    /// Largest decompressed NIfTI, in bytes (guards against gzip bombs).
    #[arg(long, env = "NEUROVOL_WORKER_MAX_NIFTI_BYTES", default_value_t = 1 << 30)]
    pub max_nifti_bytes: u64,
    /// On SIGTERM/Ctrl-C (or stdin EOF): how long the running job may take to finish
    /// before it is put back in the queue and the worker exits, in seconds.
    #[arg(long, env = "NEUROVOL_WORKER_SHUTDOWN_GRACE", default_value = "120", value_parser = parse_secs)]
    pub shutdown_grace: Duration,
    /// How long a finished job's status stays queryable, in seconds.
    #[arg(long, env = "NEUROVOL_WORKER_RESULT_TTL", default_value = "3600", value_parser = parse_secs)]
    pub result_ttl: Duration,
    /// Inference engine: `cpu` (default) or `gpu` (wgpu on the best Vulkan adapter; the
    /// worker refuses to start when there is none).
    #[arg(long, env = "NEUROVOL_WORKER_ENGINE", default_value = "cpu", value_parser = EngineKind::parse)]
    pub engine: EngineKind,
    /// Shut down when stdin reaches end-of-file (the server passes a pipe, so a child
    /// worker never outlives its parent, even after `kill -9`).
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > 7.0 * 86400.0 {
        return Err(format!("'{s}' is not a sensible number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

impl WorkerConfig {
    pub fn assets_dir(&self) -> PathBuf {
        self.assets.clone().unwrap_or_else(volumetry::assets_dir)
    }

    /// Refuses configurations that cannot work, with a one-line reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.api_key.trim().len() < 16 {
            return Err("NEUROVOL_WORKER_API_KEY must be set (at least 16 characters)".into());
        }
        if self.endpoint_id.is_empty()
            || !self
                .endpoint_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("the endpoint id may hold only letters, digits, '-' and '_'".into());
        }
        if self.queue_capacity == 0 {
            return Err("the queue capacity must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_secs("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("x").is_err());
        assert!(parse_secs("NaN").is_err());
    }

    #[test]
    fn key_is_required() {
        let c = WorkerConfig::try_parse_from(["w", "--api-key", "short"]).unwrap();
        assert!(c.validate().is_err());
        let c = WorkerConfig::try_parse_from(["w", "--api-key", "0123456789abcdef0123"]).unwrap();
        assert!(c.validate().is_ok());
        let err =
            WorkerConfig::try_parse_from(["w", "--api-key", "0123456789abcdef0123", "--engine", "cuda"]).unwrap_err();
        assert!(err.to_string().contains("cpu or gpu"), "{err}");
    }
}
