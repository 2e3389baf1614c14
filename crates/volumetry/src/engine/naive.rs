//! Plain, obviously-correct MeshNet (direct loops over the PyTorch weight layout). Used as
//! the oracle in unit tests; far too slow for real volumes.

use crate::model::{Activation, GeluForm, Layer, Model};

/// One layer on a `[c][z][y][x]` volume (x fastest), zero "same" padding.
pub fn conv3d(layer: &Layer, input: &[f32], dims: [usize; 3]) -> Vec<f32> {
    let [nx, ny, nz] = dims;
    let n = nx * ny * nz;
    let k = layer.kernel as isize;
    let d = layer.dilation as isize;
    let h = k / 2;
    let mut out = vec![0.0f32; layer.cout * n];
    for co in 0..layer.cout {
        for z in 0..nz as isize {
            for y in 0..ny as isize {
                for x in 0..nx as isize {
                    let mut s = layer.bias[co] as f64;
                    for ci in 0..layer.cin {
                        // weight axes a,b,c run along tensor D,H,W = x,y,z
                        for a in 0..k {
                            for b in 0..k {
                                for c in 0..k {
                                    let (xx, yy, zz) = (x + (a - h) * d, y + (b - h) * d, z + (c - h) * d);
                                    if xx < 0
                                        || yy < 0
                                        || zz < 0
                                        || xx >= nx as isize
                                        || yy >= ny as isize
                                        || zz >= nz as isize
                                    {
                                        continue;
                                    }
                                    let v = input[ci * n + xx as usize + nx * (yy as usize + ny * zz as usize)];
                                    s += layer.w(co, ci, a as usize, b as usize, c as usize) as f64 * v as f64;
                                }
                            }
                        }
                    }
                    out[co * n + x as usize + nx * (y as usize + ny * z as usize)] = s as f32;
                }
            }
        }
    }
    out
}

pub fn activate(v: f32, act: Activation, gelu: GeluForm) -> f32 {
    let x = v as f64;
    (match act {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        Activation::Elu => {
            if x > 0.0 {
                x
            } else {
                x.exp_m1()
            }
        }
        Activation::Gelu => match gelu {
            GeluForm::Exact => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            GeluForm::Tanh => 0.5 * x * (1.0 + (0.7978845608028654 * (x + 0.044715 * x * x * x)).tanh()),
        },
    }) as f32
}

/// Full forward pass; returns logits `[class][z][y][x]`.
pub fn logits(model: &Model, input: &[f32], dims: [usize; 3], gelu: GeluForm) -> Vec<f32> {
    let n = dims.iter().product::<usize>();
    let mut x = input.to_vec();
    for l in &model.layers {
        let mut y = conv3d(l, &x, dims);
        if let Some(eps) = l.instance_norm_eps {
            for c in 0..l.cout {
                let ch = &mut y[c * n..(c + 1) * n];
                let mean = ch.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
                let var = ch.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
                let inv = 1.0 / (var + eps as f64).sqrt();
                ch.iter_mut().for_each(|v| *v = ((*v as f64 - mean) * inv) as f32);
            }
        }
        y.iter_mut().for_each(|v| *v = activate(*v, l.activation, gelu));
        x = y;
    }
    x
}

/// Argmax over classes, ties → lowest index (RECIPE §5.1).
pub fn argmax(logits: &[f32], n_classes: usize, n: usize) -> Vec<u8> {
    (0..n)
        .map(|v| {
            let mut best = 0;
            for c in 1..n_classes {
                if logits[c * n + v] > logits[best * n + v] {
                    best = c;
                }
            }
            best as u8
        })
        .collect()
}
