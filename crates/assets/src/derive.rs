//! Re-layout of an upstream TF.js layers-model (brainchop's `model.json` + its weight shards)
//! into the two files NeuroVol's engine loads: `model.safetensors` and `arch.json`
//! (`models/RECIPE.md` §0 and §4).
//!
//! * **Weights**: each `Conv3D` of the graph, in model order, becomes `layers.N.weight`
//!   (TF.js kernel `[kd,kh,kw,in,out]` transposed to PyTorch's `[out,in,kd,kh,kw]`) and, when
//!   the layer has one, `layers.N.bias`. Values are moved as 4-byte groups, never converted, so
//!   the output is bit-exact. The file is written by hand, byte for byte as the shipped files
//!   were (tensors sorted by name, data in the same order, compact JSON header padded with
//!   spaces to a multiple of 8, the same `__metadata__`): the result is checked against the
//!   manifest's SHA-256, so a derived `model.safetensors` is as trustworthy as a downloaded
//!   file.
//! * **Architecture**: the layer list (geometry, dilation, bias, activation, and instance
//!   normalisation for every layer whose TF.js name ends in `_gn`, as brainchop's web app does)
//!   plus the summary numbers the shipped `arch.json` carries. The shipped file also has
//!   descriptive text, so a derived `arch.json` is not byte-identical to it and cannot be
//!   checked by hash: its verification is structural (tests compare it field by field with the
//!   shipped one and load both into the engine), and at run time it is trusted because it is
//!   computed from the same hash-pinned `model.json` as the verified weights.
//!
//! Pure: bytes in, bytes out; [`crate::derive_missing`] does the file handling.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Why a TF.js model cannot be derived; the message names the layer, weight or shard.
#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    #[error("model.json is not a TF.js layers-model: {0}")]
    Json(#[from] serde_json::Error),
    #[error("model.json: {0}")]
    Unsupported(String),
    #[error("weights: {0}")]
    Weights(String),
}

fn unsupported<T>(message: String) -> Result<T, DeriveError> {
    Err(DeriveError::Unsupported(message))
}

fn bad_weights<T>(message: String) -> Result<T, DeriveError> {
    Err(DeriveError::Weights(message))
}

/// The two derived files, as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    pub safetensors: Vec<u8>,
    pub arch_json: Vec<u8>,
}

/// Names that go into the derived files.
#[derive(Clone, Copy, Debug)]
pub struct ModelNaming<'a> {
    /// NeuroVol's folder name for the model (`arch.json` `name`), e.g. `mindgrab`.
    pub name: &'a str,
    /// Where the weights come from, e.g. `github.com/neuroneural/brainchop public/models/mindgrab`
    /// (see [`source_from_url`]).
    pub source: &'a str,
}

/// `github.com/<owner>/<repo> <folder>` from a pinned upstream URL of a `model.json`
/// (`https://github.com/<owner>/<repo>/raw/<commit>/<folder>/model.json`), as the shipped
/// files' metadata names their source; `None` for any other URL shape.
pub fn source_from_url(model_json_url: &str) -> Option<String> {
    let rest = model_json_url.strip_prefix("https://")?;
    let (repo, path) = rest.split_once("/raw/")?;
    let (_commit, file) = path.split_once('/')?;
    let (folder, _name) = file.rsplit_once('/')?;
    Some(format!("{repo} {folder}"))
}

// ---------------------------------------------------------------------------------------------
// model.json

#[derive(Deserialize)]
struct ModelJson {
    #[serde(rename = "modelTopology")]
    model_topology: Topology,
    #[serde(rename = "weightsManifest")]
    weights_manifest: Vec<WeightGroup>,
}

#[derive(Deserialize)]
struct Topology {
    model_config: ModelConfig,
}

#[derive(Deserialize)]
struct ModelConfig {
    class_name: String,
    config: GraphConfig,
}

#[derive(Deserialize)]
struct GraphConfig {
    layers: Vec<KerasLayer>,
    output_layers: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct KerasLayer {
    class_name: String,
    name: String,
    config: LayerConfig,
    #[serde(default)]
    inbound_nodes: Vec<serde_json::Value>,
}

/// The union of the `config` fields of the layer classes we accept; each is checked where used.
#[derive(Deserialize)]
struct LayerConfig {
    #[serde(default)]
    batch_input_shape: Option<Vec<Option<usize>>>,
    #[serde(default)]
    filters: Option<usize>,
    #[serde(default)]
    kernel_size: Option<Vec<usize>>,
    #[serde(default)]
    strides: Option<Vec<usize>>,
    #[serde(default)]
    dilation_rate: Option<Vec<usize>>,
    #[serde(default)]
    padding: Option<String>,
    #[serde(default)]
    data_format: Option<String>,
    #[serde(default)]
    groups: Option<usize>,
    #[serde(default)]
    activation: Option<String>,
    #[serde(default)]
    use_bias: Option<bool>,
}

#[derive(Deserialize)]
struct WeightGroup {
    paths: Vec<String>,
    weights: Vec<WeightSpec>,
}

#[derive(Deserialize)]
struct WeightSpec {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    #[serde(default)]
    quantization: Option<serde_json::Value>,
}

/// One convolution of the model, as the derived files describe it.
#[derive(Clone, Debug)]
struct Conv {
    tfjs_name: String,
    cin: usize,
    cout: usize,
    kernel: usize,
    dilation: usize,
    bias: bool,
    instance_norm: bool,
    activation: Activation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activation {
    None,
    Relu,
    Elu,
    Gelu,
}

impl Activation {
    /// TF.js activation name → ours; `linear` is none.
    fn from_tfjs(name: &str) -> Option<Activation> {
        match name {
            "linear" => Some(Activation::None),
            "relu" => Some(Activation::Relu),
            "elu" => Some(Activation::Elu),
            "gelu" => Some(Activation::Gelu),
            _ => None,
        }
    }
}

/// Layers named like this get instance normalisation after the convolution (brainchop's web
/// app applies it to every layer whose TF.js name ends so; RECIPE.md §4, mindgrab).
const INSTANCE_NORM_SUFFIX: &str = "_gn";
/// Epsilon of that normalisation (RECIPE.md §4).
const INSTANCE_NORM_EPS: f64 = 1e-5;

/// A parsed TF.js layers-model: the chain of convolutions and where their weights are.
pub struct TfjsModel {
    convs: Vec<Conv>,
    groups: Vec<WeightGroup>,
}

impl TfjsModel {
    /// Reads `model.json`. Only what MeshNet uses is accepted: a chain (each layer fed by the
    /// one before) of one input, `Conv3D` layers (stride 1, `same` padding, cubic odd kernel,
    /// equal dilation, channels last) and `Activation` layers, with float32 weights; anything
    /// else is refused with the layer's name rather than guessed at.
    pub fn parse(model_json: &[u8]) -> Result<TfjsModel, DeriveError> {
        let model: ModelJson = serde_json::from_slice(model_json)?;
        let config = &model.model_topology.model_config;
        if !matches!(config.class_name.as_str(), "Functional" | "Model") {
            return unsupported(format!(
                "model class {:?} (expected a Functional layers-model)",
                config.class_name
            ));
        }
        let layers = &config.config.layers;
        let mut convs: Vec<Conv> = Vec::new();
        let mut channels = None;
        for (i, layer) in layers.iter().enumerate() {
            let fed_by = i.checked_sub(1).map(|p| layers[p].name.as_str());
            if inbound_names(layer)? != fed_by.into_iter().collect::<Vec<_>>() {
                return unsupported(format!(
                    "layer {:?} is not fed by the layer before it only (not a chain)",
                    layer.name
                ));
            }
            let c = &layer.config;
            match layer.class_name.as_str() {
                "InputLayer" if i == 0 => {
                    channels = match c.batch_input_shape.as_deref() {
                        Some([_, .., Some(ch)]) => Some(*ch),
                        _ => {
                            return unsupported(format!("input {:?} has no channel count", layer.name));
                        }
                    };
                }
                "Conv3D" => {
                    let Some(cin) = channels else {
                        return unsupported(format!("{:?} comes before the input", layer.name));
                    };
                    let conv = parse_conv(layer, cin)?;
                    channels = Some(conv.cout);
                    convs.push(conv);
                }
                "Activation" => {
                    let act = c.activation.as_deref().unwrap_or("linear");
                    let act = Activation::from_tfjs(act).ok_or_else(|| {
                        DeriveError::Unsupported(format!("{:?}: activation {act:?} is not supported", layer.name))
                    })?;
                    match convs.last_mut() {
                        Some(conv) if conv.activation == Activation::None => conv.activation = act,
                        _ => {
                            return unsupported(format!(
                                "{:?}: an activation must follow a convolution without one",
                                layer.name
                            ));
                        }
                    }
                }
                other => {
                    return unsupported(format!("layer {:?} of class {other:?} is not supported", layer.name));
                }
            }
        }
        let last = layers.last().map(|l| l.name.as_str());
        let outputs: Vec<_> = config.config.output_layers.iter().map(first_str).collect();
        if convs.is_empty() || outputs != [last] {
            return unsupported("the output must be the last layer of a chain of convolutions".into());
        }
        for group in &model.weights_manifest {
            for w in &group.weights {
                let kind = if w.quantization.is_some() {
                    "quantized"
                } else {
                    w.dtype.as_str()
                };
                if kind != "float32" {
                    return bad_weights(format!("{:?} is {kind} (only plain float32 is supported)", w.name));
                }
            }
        }
        Ok(TfjsModel {
            convs,
            groups: model.weights_manifest,
        })
    }

    /// The weight shard files, relative to `model.json`'s folder, in the order
    /// [`TfjsModel::derive`] wants their bytes (weightsManifest order).
    pub fn shard_paths(&self) -> Vec<&str> {
        self.groups
            .iter()
            .flat_map(|g| g.paths.iter().map(String::as_str))
            .collect()
    }

    /// Number of classes (output channels of the last convolution).
    pub fn n_classes(&self) -> usize {
        self.convs.last().map_or(0, |c| c.cout)
    }

    /// Builds both files from the shards' bytes (one entry per [`TfjsModel::shard_paths`],
    /// same order). Refuses shards whose total length differs from what the weightsManifest
    /// declares, weights missing for a layer or of the wrong shape, and weights no layer uses.
    pub fn derive(&self, shards: &[&[u8]], naming: ModelNaming) -> Result<Derived, DeriveError> {
        let weights = self.split_weights(shards)?;
        let mut used = BTreeSet::new();
        let mut tensors = Vec::new();
        for (n, conv) in self.convs.iter().enumerate() {
            let k = conv.kernel;
            let kernel_name = format!("{}/kernel", conv.tfjs_name);
            let kernel = take(&weights, &mut used, &kernel_name, &[k, k, k, conv.cin, conv.cout])?;
            tensors.push(Tensor {
                name: format!("layers.{n}.weight"),
                shape: vec![conv.cout, conv.cin, k, k, k],
                data: kernel_to_pytorch(kernel, k, conv.cin, conv.cout),
            });
            if conv.bias {
                let bias_name = format!("{}/bias", conv.tfjs_name);
                let bias = take(&weights, &mut used, &bias_name, &[conv.cout])?;
                tensors.push(Tensor {
                    name: format!("layers.{n}.bias"),
                    shape: vec![conv.cout],
                    data: bias.to_vec(),
                });
            }
        }
        if let Some(unused) = weights.keys().find(|name| !used.contains(**name)) {
            return bad_weights(format!("{unused:?} belongs to no convolution of the model"));
        }
        Ok(Derived {
            safetensors: safetensors_bytes(tensors, &metadata(naming)),
            arch_json: self.arch_json(naming)?,
        })
    }

    /// Each weight, cut from its group's shards joined in order.
    fn split_weights<'a>(&self, shards: &[&'a [u8]]) -> Result<Weights<'_, 'a>, DeriveError> {
        let expected = self.shard_paths().len();
        if shards.len() != expected {
            return bad_weights(format!(
                "{} shard files given, the weightsManifest lists {expected}",
                shards.len()
            ));
        }
        let mut out = BTreeMap::new();
        let mut next_shard = 0;
        for group in &self.groups {
            let files = &shards[next_shard..next_shard + group.paths.len()];
            next_shard += group.paths.len();
            let have: usize = files.iter().map(|f| f.len()).sum();
            let mut need = 0usize;
            for w in &group.weights {
                need = w
                    .shape
                    .iter()
                    .try_fold(4usize, |acc, &d| acc.checked_mul(d))
                    .and_then(|bytes| need.checked_add(bytes))
                    .ok_or_else(|| DeriveError::Weights(format!("{:?} is too large", w.name)))?;
            }
            if have != need {
                return bad_weights(format!(
                    "{} hold{} {have} bytes, the weightsManifest needs {need} (truncated or wrong file?)",
                    group.paths.join(" + "),
                    if group.paths.len() == 1 { "s" } else { "" },
                ));
            }
            let mut reader = ShardReader { files, pos: 0 };
            for w in &group.weights {
                let len = 4 * w.shape.iter().product::<usize>();
                let pieces = reader.take(len);
                if out.insert(w.name.as_str(), (w.shape.as_slice(), pieces)).is_some() {
                    return bad_weights(format!("{:?} is listed twice", w.name));
                }
            }
        }
        Ok(out)
    }

    /// Called after the weights were checked against the layers, so the channel and kernel
    /// products below fit (their bytes exist); the dilations are only saturated.
    fn arch_json(&self, naming: ModelNaming) -> Result<Vec<u8>, DeriveError> {
        let last = self.convs.len() - 1;
        let layers: Vec<ArchLayer> = self
            .convs
            .iter()
            .enumerate()
            .map(|(index, c)| ArchLayer {
                index,
                kind: "conv3d",
                tfjs_name: c.tfjs_name.clone(),
                in_channels: c.cin,
                out_channels: c.cout,
                kernel: [c.kernel; 3],
                stride: [1; 3],
                dilation: [c.dilation; 3],
                padding: [c.dilation.saturating_mul(c.kernel / 2); 3],
                bias: c.bias,
                norm: c.instance_norm.then_some(ArchNorm {
                    kind: "instance_norm",
                    eps: INSTANCE_NORM_EPS,
                }),
                activation: match c.activation {
                    Activation::None if index == last => "none (logits; argmax over channels)",
                    Activation::None => "none",
                    Activation::Relu => "relu",
                    Activation::Elu => "elu",
                    Activation::Gelu => "gelu",
                },
            })
            .collect();
        let macs = |c: &Conv| c.cin * c.cout * c.kernel.pow(3);
        let biases = |c: &Conv| if c.bias { c.cout } else { 0 };
        let arch = Arch {
            name: naming.name,
            derived_by: "NeuroVol assets::derive from the upstream TF.js model.json (structure only; \
                         the shipped arch.json adds descriptive text)",
            source: format!("{} (TF.js layers-model)", naming.source),
            n_classes: self.n_classes(),
            n_conv_layers: self.convs.len(),
            dilation_schedule: self.convs.iter().map(|c| c.dilation).collect(),
            receptive_field_voxels: self.convs.iter().fold(1usize, |r, c| {
                r.saturating_add((c.kernel - 1).saturating_mul(c.dilation))
            }),
            parameter_count: self.convs.iter().map(|c| macs(c) + biases(c)).sum(),
            flops_per_voxel: self.convs.iter().map(|c| 2 * macs(c) + biases(c)).sum(),
            flops_note: "multiply-add counted as 2 FLOPs; conv + bias only (activations/norm not counted)",
            layers,
        };
        let mut json = serde_json::to_vec_pretty(&arch)
            .map_err(|e| DeriveError::Unsupported(format!("writing arch.json: {e}")))?;
        json.push(b'\n');
        Ok(json)
    }
}

/// Weight name → (shape, bytes as pieces of the shards).
type Weights<'m, 'a> = BTreeMap<&'m str, (&'m [usize], Vec<&'a [u8]>)>;

/// Names of the layers feeding `layer` (`inbound_nodes` = `[[[name, node, tensor, kwargs], …]]`).
fn inbound_names(layer: &KerasLayer) -> Result<Vec<&str>, DeriveError> {
    match layer.inbound_nodes.as_slice() {
        [] => Ok(vec![]),
        [node] => node
            .as_array()
            .map(|inputs| inputs.iter().filter_map(first_str).collect())
            .ok_or_else(|| DeriveError::Unsupported(format!("{:?}: unreadable inbound_nodes", layer.name))),
        _ => unsupported(format!("{:?} is called more than once", layer.name)),
    }
}

fn first_str(v: &serde_json::Value) -> Option<&str> {
    v.as_array()?.first()?.as_str()
}

fn parse_conv(layer: &KerasLayer, cin: usize) -> Result<Conv, DeriveError> {
    let c = &layer.config;
    let name = &layer.name;
    let same3 = |v: &Option<Vec<usize>>, default: usize| match v.as_deref() {
        None => Some(default),
        Some([a, b, d]) if a == b && b == d => Some(*a),
        Some(_) => None,
    };
    let kernel = same3(&c.kernel_size, 0).filter(|k| k % 2 == 1);
    let dilation = same3(&c.dilation_rate, 1).filter(|&d| d >= 1);
    let (Some(kernel), Some(dilation), Some(cout)) = (kernel, dilation, c.filters) else {
        return unsupported(format!(
            "{name:?}: only cubic odd kernels with equal dilation and a filter count are supported"
        ));
    };
    if same3(&c.strides, 1) != Some(1)
        || c.padding.as_deref() != Some("same")
        || c.data_format.as_deref().unwrap_or("channels_last") != "channels_last"
        || c.groups.unwrap_or(1) != 1
    {
        return unsupported(format!(
            "{name:?}: only stride 1, 'same' padding, channels-last, ungrouped convolutions are supported"
        ));
    }
    let act = c.activation.as_deref().unwrap_or("linear");
    let activation = Activation::from_tfjs(act)
        .ok_or_else(|| DeriveError::Unsupported(format!("{name:?}: activation {act:?} is not supported")))?;
    Ok(Conv {
        tfjs_name: name.clone(),
        cin,
        cout,
        kernel,
        dilation,
        bias: c.use_bias.unwrap_or(true),
        instance_norm: name.ends_with(INSTANCE_NORM_SUFFIX),
        activation,
    })
}

/// Walks a group's shard files as one byte stream (a weight may straddle two shards).
struct ShardReader<'s, 'a> {
    files: &'s [&'a [u8]],
    pos: usize,
}

impl<'a> ShardReader<'_, 'a> {
    /// The next `len` bytes as pieces; the caller checked that the group holds them all.
    fn take(&mut self, mut len: usize) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        while len > 0 {
            let Some((first, rest)) = self.files.split_first() else {
                break;
            };
            let piece = &first[self.pos..first.len().min(self.pos + len)];
            len -= piece.len();
            self.pos += piece.len();
            if !piece.is_empty() {
                pieces.push(piece);
            }
            if self.pos == first.len() {
                self.files = rest;
                self.pos = 0;
            }
        }
        pieces
    }
}

/// Looks a weight up, checks its shape and marks it used.
fn take<'m>(
    weights: &Weights<'m, '_>,
    used: &mut BTreeSet<&'m str>,
    name: &str,
    shape: &[usize],
) -> Result<Vec<u8>, DeriveError> {
    let Some((key, (have, pieces))) = weights.get_key_value(name) else {
        return bad_weights(format!("{name:?} is missing from the weightsManifest"));
    };
    if *have != shape {
        return bad_weights(format!("{name:?} has shape {have:?}, expected {shape:?}"));
    }
    used.insert(*key);
    Ok(pieces.concat())
}

/// `[kd,kh,kw,in,out]` → `[out,in,kd,kh,kw]`, moving whole float32 values.
fn kernel_to_pytorch(tfjs: Vec<u8>, k: usize, cin: usize, cout: usize) -> Vec<u8> {
    let taps = k * k * k;
    let mut out = vec![0u8; tfjs.len()];
    for tap in 0..taps {
        for i in 0..cin {
            for o in 0..cout {
                let src = 4 * ((tap * cin + i) * cout + o);
                let dst = 4 * ((o * cin + i) * taps + tap);
                out[dst..dst + 4].copy_from_slice(&tfjs[src..src + 4]);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// model.safetensors

const FORMAT: &str = "NeuroVol MeshNet weights v1";
const LAYOUT: &str =
    "conv weight [out_ch, in_ch, kd, kh, kw] (PyTorch Conv3d) = tfjs kernel.transpose(4,3,0,1,2); bias [out_ch]";

/// The order of the four `__metadata__` keys in each shipped `model.safetensors`. The converter
/// that made them wrote the metadata from a hash map, so the order differs from file to file;
/// it means nothing, but the bytes (and so the pinned SHA-256) depend on it. Other models get
/// [`DEFAULT_METADATA_ORDER`].
const SHIPPED_METADATA_ORDER: [(&str, [&str; 4]); 7] = [
    ("mindgrab", ["format", "source", "layout", "dtype"]),
    ("model11_gw_ae", ["format", "dtype", "source", "layout"]),
    ("model18cls", ["layout", "dtype", "format", "source"]),
    ("model21_104class", ["layout", "dtype", "format", "source"]),
    ("model30chan18cls", ["layout", "format", "source", "dtype"]),
    ("model30chan50cls", ["dtype", "layout", "source", "format"]),
    ("model5_gw_ae", ["dtype", "source", "format", "layout"]),
];
const DEFAULT_METADATA_ORDER: [&str; 4] = ["format", "source", "layout", "dtype"];

fn metadata(naming: ModelNaming) -> Vec<(&'static str, String)> {
    let order = SHIPPED_METADATA_ORDER
        .iter()
        .find(|(name, _)| *name == naming.name)
        .map_or(DEFAULT_METADATA_ORDER, |(_, order)| *order);
    order
        .iter()
        .map(|&key| {
            let value = match key {
                "format" => FORMAT.to_string(),
                "source" => format!("{} (TF.js layers-model)", naming.source),
                "layout" => LAYOUT.to_string(),
                _ => "float32".to_string(),
            };
            (key, value)
        })
        .collect()
}

struct Tensor {
    name: String,
    shape: Vec<usize>,
    /// float32 little-endian.
    data: Vec<u8>,
}

/// The safetensors container: 8-byte little-endian header length, compact JSON header
/// (`__metadata__` first, then the tensors sorted by name with their data in that order),
/// spaces up to a multiple of 8 bytes, then the data.
fn safetensors_bytes(mut tensors: Vec<Tensor>, metadata: &[(&str, String)]) -> Vec<u8> {
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let json = |s: &str| serde_json::Value::from(s).to_string();
    let meta: Vec<String> = metadata
        .iter()
        .map(|(k, v)| format!("{}:{}", json(k), json(v)))
        .collect();
    let mut entries = vec![format!("\"__metadata__\":{{{}}}", meta.join(","))];
    let mut offset = 0;
    for t in &tensors {
        let shape: Vec<String> = t.shape.iter().map(usize::to_string).collect();
        entries.push(format!(
            "{}:{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}}",
            json(&t.name),
            shape.join(","),
            offset + t.data.len()
        ));
        offset += t.data.len();
    }
    let mut header = format!("{{{}}}", entries.join(",")).into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for t in &tensors {
        out.extend_from_slice(&t.data);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// arch.json (the fields crates/volumetry reads, plus the shipped files' summary numbers)

#[derive(Serialize)]
struct Arch<'a> {
    name: &'a str,
    derived_by: &'static str,
    source: String,
    n_classes: usize,
    n_conv_layers: usize,
    dilation_schedule: Vec<usize>,
    receptive_field_voxels: usize,
    parameter_count: usize,
    flops_per_voxel: usize,
    flops_note: &'static str,
    layers: Vec<ArchLayer>,
}

#[derive(Serialize)]
struct ArchLayer {
    index: usize,
    kind: &'static str,
    tfjs_name: String,
    in_channels: usize,
    out_channels: usize,
    kernel: [usize; 3],
    stride: [usize; 3],
    dilation: [usize; 3],
    padding: [usize; 3],
    bias: bool,
    norm: Option<ArchNorm>,
    activation: &'static str,
}

#[derive(Serialize)]
struct ArchNorm {
    kind: &'static str,
    eps: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_each_value_to_its_pytorch_place() {
        // k=1, cin=2, cout=3: tfjs [1,1,1,2,3] value v = 10*i + o
        let vals: Vec<f32> = (0..2).flat_map(|i| (0..3).map(move |o| (10 * i + o) as f32)).collect();
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let out = kernel_to_pytorch(bytes, 1, 2, 3);
        let got: Vec<f32> = out
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        // [out][in]
        assert_eq!(got, [0.0, 10.0, 1.0, 11.0, 2.0, 12.0]);
    }

    #[test]
    fn shard_reader_crosses_shard_boundaries() {
        let (a, b) = ([1u8, 2, 3], [4u8, 5, 6, 7, 8]);
        let files: [&[u8]; 2] = [&a, &b];
        let mut r = ShardReader { files: &files, pos: 0 };
        assert_eq!(r.take(2).concat(), [1, 2]);
        assert_eq!(r.take(4).concat(), [3, 4, 5, 6]);
        assert_eq!(r.take(2).concat(), [7, 8]);
    }

    #[test]
    fn source_is_read_from_the_pinned_url() {
        assert_eq!(
            source_from_url("https://github.com/neuroneural/brainchop/raw/4c87885f/public/models/mindgrab/model.json")
                .as_deref(),
            Some("github.com/neuroneural/brainchop public/models/mindgrab")
        );
        assert_eq!(source_from_url("https://example.org/model.json"), None);
    }
}
