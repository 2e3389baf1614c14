//! MeshNet model loading: `arch.json` (layer list) + `model.safetensors` (weights
//! `[out,in,kd,kh,kw]`) + `colormap.json` (label names).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Result, VolumetryError};

/// Models this crate knows how to run (folder names under `models/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelId {
    /// FreeSurfer aparc+aseg, 104 classes (default region model).
    Model21_104class,
    /// 18 tissue/subcortical classes, not lateralised.
    Model18cls,
    /// 50 classes (subcortical + DK cortex, hemispheres merged).
    Model30chan50cls,
    /// Brain mask (brain extraction).
    Mindgrab,
}

impl ModelId {
    pub const ALL: [ModelId; 4] = [
        ModelId::Model21_104class,
        ModelId::Model18cls,
        ModelId::Model30chan50cls,
        ModelId::Mindgrab,
    ];

    /// The region model used when none is named (server, worker and commands).
    pub const DEFAULT: ModelId = ModelId::Model21_104class;

    pub const fn folder(self) -> &'static str {
        match self {
            ModelId::Model21_104class => "model21_104class",
            ModelId::Model18cls => "model18cls",
            ModelId::Model30chan50cls => "model30chan50cls",
            ModelId::Mindgrab => "mindgrab",
        }
    }

    /// Parse a model name as given on a command line.
    pub fn parse(name: &str) -> Result<ModelId> {
        ModelId::ALL.into_iter().find(|m| m.folder() == name).ok_or_else(|| {
            VolumetryError::BadInput(format!(
                "unknown model '{name}' (choose one of model21_104class, model18cls, model30chan50cls, mindgrab)"
            ))
        })
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.folder())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Elu,
    /// GELU; which form is chosen at run time (see [`GeluForm`]).
    Gelu,
}

/// TF.js (the trained model) uses the exact erf GELU; upstream Python uses the tanh form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeluForm {
    #[default]
    Exact,
    Tanh,
}

/// One Conv3d layer (+ optional instance norm, + activation).
#[derive(Clone, Debug)]
pub struct Layer {
    pub cin: usize,
    pub cout: usize,
    /// 3 or 1.
    pub kernel: usize,
    pub dilation: usize,
    /// `[out][in][kd][kh][kw]` as in the file.
    pub weight: Vec<f32>,
    /// Zero when the layer has no bias.
    pub bias: Vec<f32>,
    pub instance_norm_eps: Option<f32>,
    pub activation: Activation,
}

impl Layer {
    /// Weight for tap offsets along tensor axes (D=i, H=j, W=k), each in 0..kernel.
    #[inline]
    pub fn w(&self, co: usize, ci: usize, a: usize, b: usize, c: usize) -> f32 {
        let k = self.kernel;
        self.weight[(((co * self.cin + ci) * k + a) * k + b) * k + c]
    }
}

#[derive(Clone, Debug)]
pub struct Model {
    pub id: Option<ModelId>,
    pub name: String,
    pub layers: Vec<Layer>,
    /// `labels[v]` = name of label value v (as in colormap.json, trailing '*' kept).
    pub labels: Vec<String>,
    pub flops_per_voxel: f64,
}

#[derive(Deserialize)]
struct ArchJson {
    name: String,
    n_classes: usize,
    layers: Vec<ArchLayer>,
    #[serde(default)]
    flops_per_voxel: Option<f64>,
}

#[derive(Deserialize)]
struct ArchLayer {
    index: usize,
    in_channels: usize,
    out_channels: usize,
    kernel: [usize; 3],
    stride: [usize; 3],
    dilation: [usize; 3],
    padding: [usize; 3],
    bias: bool,
    norm: Option<ArchNorm>,
    activation: String,
}

#[derive(Deserialize)]
struct ArchNorm {
    kind: String,
    eps: f32,
}

#[derive(Deserialize)]
struct Colormap {
    labels: Vec<String>,
}

/// A model's label colours, as its `colormap.json` (brainchop, MIT) gives them: the same
/// colours wherever labels are drawn or downloaded.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct LabelColours {
    #[serde(rename = "R")]
    pub r: Vec<u8>,
    #[serde(rename = "G")]
    pub g: Vec<u8>,
    #[serde(rename = "B")]
    pub b: Vec<u8>,
    /// Label names as written (upstream's trailing '*' kept).
    pub labels: Vec<String>,
}

impl LabelColours {
    /// Reads `<assets>/models/<id>/colormap.json`.
    pub fn load(assets: &Path, id: ModelId) -> Result<LabelColours> {
        let path = models_dir(assets).join(id.folder()).join("colormap.json");
        let bytes = std::fs::read(&path).map_err(|e| merr(format!("cannot read {}: {e}", path.display())))?;
        let c: LabelColours = serde_json::from_slice(&bytes).map_err(|e| merr(format!("colormap.json: {e}")))?;
        let n = c.labels.len();
        if c.r.len() != n || c.g.len() != n || c.b.len() != n {
            return Err(merr("colormap.json: colour and label counts differ"));
        }
        Ok(c)
    }

    /// `(value, name without upstream's '*', [r, g, b])` for every label, background first.
    pub fn entries(&self) -> impl Iterator<Item = (usize, &str, [u8; 3])> {
        self.labels
            .iter()
            .enumerate()
            .map(|(v, name)| (v, name.trim_end_matches('*'), [self.r[v], self.g[v], self.b[v]]))
    }

    /// A FreeSurfer-style colour look-up table (`value name R G B A`, A = 0 for the
    /// background, 255 otherwise), as FreeSurfer's own tools and viewers read it.
    pub fn freesurfer_lut(&self) -> String {
        let mut out = String::from("# No. Label Name:                            R   G   B   A\n");
        for (v, name, [r, g, b]) in self.entries() {
            let a = if v == 0 { 0 } else { 255 };
            out.push_str(&format!("{v:<4} {name:<40} {r:>3} {g:>3} {b:>3} {a:>3}\n"));
        }
        out
    }

    /// `{"model": …, "labels": [{"value", "name", "rgb": [r, g, b]}, …]}`.
    pub fn json(&self, model: &str) -> serde_json::Value {
        serde_json::json!({
            "model": model,
            "source": "the model's colormap.json (brainchop, MIT licence)",
            "labels": self.entries().map(|(v, name, rgb)| serde_json::json!({"value": v, "name": name, "rgb": rgb})).collect::<Vec<_>>(),
        })
    }
}

fn merr(m: impl Into<String>) -> VolumetryError {
    VolumetryError::Model(m.into())
}

impl Model {
    /// Load a model folder (arch.json, model.safetensors, colormap.json).
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Model> {
        let dir = dir.as_ref();
        let read = |f: &str| -> Result<Vec<u8>> {
            std::fs::read(dir.join(f)).map_err(|e| merr(format!("cannot read {}: {e}", dir.join(f).display())))
        };
        let arch: ArchJson =
            serde_json::from_slice(&read("arch.json")?).map_err(|e| merr(format!("arch.json: {e}")))?;
        let cmap: Colormap =
            serde_json::from_slice(&read("colormap.json")?).map_err(|e| merr(format!("colormap.json: {e}")))?;
        let st_bytes = read("model.safetensors")?;
        let st =
            safetensors::SafeTensors::deserialize(&st_bytes).map_err(|e| merr(format!("model.safetensors: {e}")))?;
        let tensor = |name: &str, len: usize| -> Result<Vec<f32>> {
            let t = st
                .tensor(name)
                .map_err(|_| merr(format!("model.safetensors lacks {name}")))?;
            if t.dtype() != safetensors::Dtype::F32 || t.data().len() != len * 4 {
                return Err(merr(format!("{name}: expected {len} float32 values")));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let mut layers = Vec::new();
        for (n, l) in arch.layers.iter().enumerate() {
            let k = l.kernel[0];
            if l.index != n
                || l.kernel != [k; 3]
                || !(k == 1 || k == 3)
                || l.stride != [1; 3]
                || l.dilation != [l.dilation[0]; 3]
                || l.padding != [l.dilation[0] * (k / 2); 3]
                || l.dilation[0] == 0
                || l.dilation[0] > 64
            {
                return Err(merr(format!(
                    "layer {n}: unsupported geometry (only 'same' 3³/1³ dilated convs)"
                )));
            }
            let activation = match l.activation.as_str() {
                "relu" => Activation::Relu,
                "elu" => Activation::Elu,
                "gelu" => Activation::Gelu,
                a if a.starts_with("none") => Activation::None,
                a => return Err(merr(format!("layer {n}: unknown activation {a}"))),
            };
            let instance_norm_eps = match &l.norm {
                None => None,
                Some(nm) if nm.kind == "instance_norm" => Some(nm.eps),
                Some(nm) => return Err(merr(format!("layer {n}: unknown norm {}", nm.kind))),
            };
            let weight = tensor(
                &format!("layers.{n}.weight"),
                l.out_channels * l.in_channels * k * k * k,
            )?;
            let bias = if l.bias {
                tensor(&format!("layers.{n}.bias"), l.out_channels)?
            } else {
                vec![0.0; l.out_channels]
            };
            if n > 0 && layers.last().map(|p: &Layer| p.cout) != Some(l.in_channels) {
                return Err(merr(format!("layer {n}: channel mismatch")));
            }
            layers.push(Layer {
                cin: l.in_channels,
                cout: l.out_channels,
                kernel: k,
                dilation: l.dilation[0],
                weight,
                bias,
                instance_norm_eps,
                activation,
            });
        }
        let last = layers.last().ok_or_else(|| merr("arch.json has no layers"))?;
        if layers[0].cin != 1
            || last.kernel != 1
            || last.activation != Activation::None
            || last.cout != arch.n_classes
            || last.cout > 255
        {
            return Err(merr(
                "unsupported layout: expected 1 input channel and a 1×1×1 logits head (≤255 classes)",
            ));
        }
        if layers[..layers.len() - 1].iter().any(|l| l.kernel != 3) {
            return Err(merr("only the last layer may be 1×1×1"));
        }
        if cmap.labels.len() != arch.n_classes {
            return Err(merr("colormap.json label count differs from n_classes"));
        }
        let flops = arch.flops_per_voxel.unwrap_or_else(|| {
            layers
                .iter()
                .map(|l| (2 * l.cin * l.cout * l.kernel.pow(3)) as f64)
                .sum()
        });
        Ok(Model {
            id: ModelId::ALL.into_iter().find(|m| m.folder() == arch.name),
            name: arch.name,
            layers,
            labels: cmap.labels,
            flops_per_voxel: flops,
        })
    }

    /// Load a named model from an assets folder (`<assets>/models/<name>/`).
    pub fn load(assets: &Path, id: ModelId) -> Result<Model> {
        Model::load_dir(models_dir(assets).join(id.folder()))
    }

    pub fn n_classes(&self) -> usize {
        self.layers.last().map(|l| l.cout).unwrap_or(0)
    }

    /// Sum of the dilations of the 3³ layers = receptive-field radius in voxels.
    pub fn receptive_radius(&self) -> usize {
        self.layers.iter().filter(|l| l.kernel == 3).map(|l| l.dilation).sum()
    }

    pub fn has_instance_norm(&self) -> bool {
        self.layers.iter().any(|l| l.instance_norm_eps.is_some())
    }
}

pub fn models_dir(assets: &Path) -> PathBuf {
    assets.join("models")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_of_the_default_model() {
        let assets = crate::assets_dir();
        if !models_dir(&assets).join(ModelId::DEFAULT.folder()).is_dir() {
            // as the reference tests: a must where the test command asks for the assets
            assert!(
                !std::env::var("NEUROVOL_REQUIRE_ASSETS").is_ok_and(|v| v == "1"),
                "assets not found at {}",
                assets.display()
            );
            eprintln!("skipping: no assets at {}", assets.display());
            return;
        }
        let c = LabelColours::load(&assets, ModelId::DEFAULT).unwrap();
        assert_eq!(c.labels.len(), 104);
        let lut = c.freesurfer_lut();
        assert_eq!(lut.lines().count(), 105, "a header and one line per label");
        let hip = lut
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("Left-Hippocampus"))
            .unwrap();
        assert_eq!(hip.split_whitespace().count(), 6, "{hip}");
        assert!(
            lut.lines().nth(1).unwrap().ends_with("  0"),
            "the background is transparent"
        );
        let json = c.json("model21_104class");
        assert_eq!(json["labels"].as_array().unwrap().len(), 104);
        assert!(!lut.contains('*'), "upstream's asterisks are dropped");
    }
}
