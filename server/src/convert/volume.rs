//! The converted volume: the usability rules (one 3D volume fit for whole-brain
//! volumetry) and the header scrub.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use volumetry::nifti::{self, Header, Volume};

use super::*;

/// Geometry of an accepted volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    pub dims: [usize; 3],
    pub voxel_mm: [f64; 3],
    pub warnings: Vec<ConvertWarning>,
}

/// The usability rules on a parsed NIfTI header (see the module documentation).
pub fn check_volume(h: &Header, settings: &ConvertSettings) -> Result<Geometry, ConvertError> {
    let nd = h.dim[0];
    if !(1..=7).contains(&nd) {
        return Err(ConvertError::BadOutput("invalid dimension count"));
    }
    let nd = nd as usize;
    let mut sizes = [1usize; 7];
    for (i, size) in sizes.iter_mut().enumerate().take(nd) {
        let d = h.dim[i + 1];
        if d < 1 {
            return Err(ConvertError::BadOutput("invalid dimensions"));
        }
        *size = d as usize;
    }
    let volumes: usize = sizes[3..].iter().product();
    if volumes > 1 {
        return Err(ConvertError::FourD { volumes });
    }
    let dims = [sizes[0], sizes[1], sizes[2]];
    if dims.contains(&1) {
        return Err(ConvertError::NotThreeD);
    }
    let fewest = *dims.iter().min().expect("three dims");
    if fewest < settings.min_slices {
        return Err(ConvertError::TooFewSlices {
            slices: fewest,
            min: settings.min_slices,
        });
    }
    // xyzt_units & 7: 1 metre, 2 mm, 3 µm; 0 (unknown) is taken as mm.
    let scale = match h.xyzt_units & 7 {
        1 => 1000.0,
        3 => 0.001,
        _ => 1.0,
    };
    let voxel_mm = [1, 2, 3].map(|i| (h.pixdim[i] as f64).abs() * scale);
    if voxel_mm.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        return Err(ConvertError::InvalidGeometry);
    }
    if voxel_mm.iter().any(|&v| v > settings.max_voxel_mm + MM_EPS) {
        return Err(ConvertError::TooCoarse {
            voxel_mm,
            max_mm: settings.max_voxel_mm,
        });
    }
    let extent_mm = [0, 1, 2].map(|i| dims[i] as f64 * voxel_mm[i]);
    if extent_mm.iter().any(|&e| e < settings.min_extent_mm - MM_EPS) {
        return Err(ConvertError::TooLittleCoverage {
            extent_mm,
            min_mm: settings.min_extent_mm,
        });
    }
    let mut warnings = Vec::new();
    if voxel_mm.iter().any(|&v| v > settings.low_res_voxel_mm + MM_EPS) {
        warnings.push(ConvertWarning::LowResolution { voxel_mm });
    }
    Ok(Geometry {
        dims,
        voxel_mm,
        warnings,
    })
}

/// Header byte ranges blanked by [`scrub_nifti`]: ANALYZE `data_type` (4..14) and
/// `db_name` (14..32), `descrip` (148..228: dcm2niix writes TE and acquisition time),
/// `aux_file` (228..252: dcm2niix copies ImageComments), `intent_name` (328..344) and the
/// extension flag (348..352).
pub const SCRUBBED_RANGES: &[std::ops::Range<usize>] = &[4..14, 14..32, 148..228, 228..252, 328..344, 348..352];

/// Blanks the header's text fields and drops header extensions in an uncompressed
/// NIfTI-1 image held in `buf`: afterwards `vox_offset` is 352 and `buf[352..]` is exactly
/// the `voxel_bytes` of image data that followed the old `vox_offset`.
pub fn scrub_nifti(buf: &mut Vec<u8>, big_endian: bool, voxel_bytes: usize) -> Result<(), ConvertError> {
    if buf.len() < 352 {
        return Err(ConvertError::BadOutput("truncated header"));
    }
    let raw: [u8; 4] = buf[108..112].try_into().expect("4 bytes");
    let vox_offset = if big_endian {
        f32::from_be_bytes(raw)
    } else {
        f32::from_le_bytes(raw)
    };
    if !vox_offset.is_finite() || vox_offset < 352.0 || vox_offset.fract() != 0.0 {
        return Err(ConvertError::BadOutput("invalid vox_offset"));
    }
    let vox_offset = vox_offset as usize;
    let end = vox_offset
        .checked_add(voxel_bytes)
        .ok_or(ConvertError::BadOutput("invalid size"))?;
    if buf.len() < end {
        return Err(ConvertError::BadOutput("fewer voxels than the header declares"));
    }
    buf.truncate(end);
    buf.drain(352..vox_offset);
    for range in SCRUBBED_RANGES {
        buf[range.clone()].fill(0);
    }
    let offset = if big_endian {
        352f32.to_be_bytes()
    } else {
        352f32.to_le_bytes()
    };
    buf[108..112].copy_from_slice(&offset);
    Ok(())
}

/// Reads dcm2niix's output, checks it, scrubs its header, verifies it with volumetry's
/// reader, removes the face (with a `defacer`) and writes it gzip-compressed to `target`
/// (through a temporary name).
pub(super) fn finalize_nifti(
    produced: &Path,
    target: &Path,
    settings: &ConvertSettings,
    defacer: Option<&Defacer>,
) -> Result<(Geometry, Option<Defacing>), ConvertError> {
    let file = File::open(produced).map_err(io_err("read the converted volume"))?;
    let gz = produced.extension().is_some_and(|e| e == "gz");
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    // Header first: a 4D series is refused before its voxels are read.
    let mut buf = vec![0u8; 348];
    reader
        .read_exact(&mut buf)
        .map_err(|_| ConvertError::BadOutput("truncated header"))?;
    let (header, big_endian) = nifti::parse_header(&buf).map_err(|_| ConvertError::BadOutput("not a NIfTI-1 file"))?;
    let geometry = check_volume(&header, settings)?;
    let bytes_per_voxel = nifti::scalar_bytes(header.datatype).ok_or(ConvertError::UnsupportedDataType {
        datatype: header.datatype,
    })?;
    let voxel_bytes = geometry.dims.iter().product::<usize>() * bytes_per_voxel;
    reader
        .read_to_end(&mut buf)
        .map_err(|_| ConvertError::BadOutput("unreadable voxel data"))?;
    drop(reader);
    scrub_nifti(&mut buf, big_endian, voxel_bytes)?;
    // The reader the segmentation worker uses. Header, datatype and size are already
    // checked, so what it can still refuse is the data (NaN/infinite values, > 2^30 voxels).
    let volume = nifti::decode_f32(&buf).map_err(|_| ConvertError::UnreadableVolume)?;
    if volume.dims != geometry.dims {
        return Err(ConvertError::BadOutput("dimensions changed"));
    }
    let defacing = match defacer {
        Some(defacer) => Some(deface(defacer, &mut buf, &volume)?),
        None => None,
    };
    drop(volume);

    let partial = target.with_extension("gz.partial");
    let written = (|| {
        let file = File::create_new(&partial)?;
        let mut gz = flate2::write::GzEncoder::new(
            BufWriter::new(file),
            flate2::Compression::new(settings.gzip_level.min(9)),
        );
        gz.write_all(&buf)?;
        let file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&partial, target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&partial);
        return Err(ConvertError::Io {
            op: "write the converted volume",
            source: e,
        });
    }
    Ok((geometry, defacing))
}

/// Zeroes the face in the scrubbed image `buf`, whose decoded voxels are `volume`.
fn deface(defacer: &Defacer, buf: &mut [u8], volume: &Volume<f32>) -> Result<Defacing, ConvertError> {
    defacer.deface_decoded(buf, volume).map_err(|e| match e {
        volumetry::VolumetryError::NoBrain => ConvertError::NoBrain,
        volumetry::VolumetryError::BadInput(_) => ConvertError::UnreadableVolume,
        _ => ConvertError::BadOutput("the image could not be defaced"),
    })
}
