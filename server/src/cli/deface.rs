//! `neurovol deface INPUT.nii.gz --out defaced.nii.gz [--mask-grid coarse|full]
//!  [--mask brain_mask.nii.gz]`
//!
//! Removes the face of a head NIfTI the way the pipeline does before anything is stored
//! (volumetry's `deface`), keeping the image's datatype and header; prints the plane and
//! the removed voxel count as JSON. `--mask` also writes the brain mask the plane came from.

use std::path::{Path, PathBuf};

use volumetry::deface::{Defacer, Defacing, MaskGrid};

#[derive(Debug, clap::Args)]
pub struct DefaceArgs {
    /// A single 3D NIfTI (.nii or .nii.gz).
    pub input: PathBuf,
    /// The defaced NIfTI to write (gzip-compressed when the name ends in .gz).
    #[arg(long)]
    pub out: PathBuf,
    /// The grid of the brain mask the plane is taken from.
    #[arg(long, value_enum, default_value = "coarse")]
    pub mask_grid: MaskGridArg,
    /// Also write that brain mask here.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// How far below the brain the plane runs (mm).
    #[arg(long, default_value_t = volumetry::deface::BUFFER_MM)]
    pub buffer_mm: f64,
    /// How far from the brain the head is kept (mm).
    #[arg(long, default_value_t = volumetry::deface::SHELL_MM)]
    pub shell_mm: f64,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MaskGridArg {
    Coarse,
    Full,
}

impl From<MaskGridArg> for MaskGrid {
    fn from(g: MaskGridArg) -> MaskGrid {
        match g {
            MaskGridArg::Coarse => MaskGrid::Coarse,
            MaskGridArg::Full => MaskGrid::Full,
        }
    }
}

pub fn run(args: &DefaceArgs, assets: &Path) -> Result<Defacing, String> {
    let mut buf = read_nifti(&args.input)?;
    let mut defacer = Defacer::load(assets, args.mask_grid.into()).map_err(|e| e.to_string())?;
    defacer.buffer_mm = args.buffer_mm;
    defacer.shell_mm = args.shell_mm;
    if let Some(path) = &args.mask {
        let volume = volumetry::nifti::decode_f32(&buf).map_err(|e| e.to_string())?;
        let (mask, _) = defacer.brain_mask(&volume).map_err(|e| e.to_string())?;
        volumetry::nifti::write(&mask, path).map_err(|e| e.to_string())?;
    }
    let defacing = defacer.deface_nifti(&mut buf).map_err(|e| e.to_string())?;
    write_nifti(&args.out, &buf)?;
    Ok(defacing)
}

fn read_nifti(path: &Path) -> Result<Vec<u8>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&raw[..]), &mut out)
            .map_err(|e| format!("cannot decompress {}: {e}", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn write_nifti(path: &Path, buf: &[u8]) -> Result<(), String> {
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        std::io::Write::write_all(&mut gz, buf).map_err(|e| e.to_string())?;
        gz.finish().map_err(|e| e.to_string())?
    } else {
        buf.to_vec()
    };
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
