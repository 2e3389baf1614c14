//! Typed errors. Every variant carries a one-line, user-presentable reason (no paths of
//! patient data are ever put in them beyond the file name the caller gave us).

#[derive(Debug, thiserror::Error)]
pub enum VolumetryError {
    /// The input image cannot be segmented (wrong format, 4D, truncated, ...).
    #[error("unusable input: {0}")]
    BadInput(String),
    /// No brain was found where one must be (the defacing's brain mask is empty).
    #[error("no brain was found in the image")]
    NoBrain,
    /// A model folder is missing files or they are inconsistent.
    #[error("model problem: {0}")]
    Model(String),
    /// The inference engine cannot run (no GPU adapter, too little device memory, a lost
    /// device); the message names the engine.
    #[error("{0}")]
    Engine(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
}

pub type Result<T> = std::result::Result<T, VolumetryError>;
