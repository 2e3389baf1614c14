// Shared by every MeshNet kernel. Activations are laid out [slot][channel][y][x] over the
// extent E the engine keeps (x fastest); a slot holds one z-slice.

struct Step {
    // conv: input slots for kz = 0, 1, 2 (−1: outside the volume, zero padding) and the
    // output slot; head: .y is the input slot
    slots: vec4<i32>,
    // x0, y0, width, height of the rectangle computed, in E coordinates
    rect: vec4<u32>,
    // conv: .x dilation; head: .y z offset in the label box;
    // conv / head with .w = 1: the whole volume in one dispatch (slot = z = invocation z,
    // .z slices), which a materialised layer allows;
    // stats / norm: .z elements per channel-slice (stats) or in all (norm), .w channels,
    // norm: .x elements per channel-slice
    misc: vec4<u32>,
}

// The slots a conv invocation reads (kz = 0, 1, 2) and writes (.w), for its z.
fn conv_slots(gz: u32) -> vec4<i32> {
    if step.misc.w == 0u {
        return step.slots;
    }
    let z = i32(gz);
    let d = i32(step.misc.x);
    let nz = i32(step.misc.z);
    let below = select(-1, z - d, z - d >= 0);
    let above = select(-1, z + d, z + d < nz);
    return vec4<i32>(below, z, above, z);
}

@group(0) @binding(3) var<uniform> step: Step;

// Activation codes, as `activation_code` in engine.rs writes them.
const ACT_NONE: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_ELU: u32 = 2u;
const ACT_GELU_EXACT: u32 = 3u;
const ACT_GELU_TANH: u32 = 4u;

// Widest hidden layer the kernels hold in registers (the shipped models have ≤ 30).
const MAXC: u32 = 32u;

fn activate(v: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return max(v, 0.0); }
        case 2u: { return select(exp(v) - 1.0, v, v > 0.0); }
        case 3u: {
            // erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), as the CPU kernels do
            let z = v * 0.70710678;
            let a = abs(z);
            let t = 1.0 / (1.0 + 0.3275911 * a);
            let poly = t * (0.2548296 + t * (-0.28449674 + t * (1.4214137 + t * (-1.453152 + t * 1.0614054))));
            let e = 1.0 - poly * exp(-a * a);
            return 0.5 * v * (1.0 + select(e, -e, z < 0.0));
        }
        case 4u: {
            let u = 0.7978846 * (v + 0.044715 * v * v * v);
            return v / (1.0 + exp(-2.0 * u));
        }
        default: { return v; }
    }
}
