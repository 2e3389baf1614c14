// Instance norm: per (slice, channel) sums for the whole-volume statistics (finished on
// the host in f64), then normalise + activate in place.

override ACT: u32;

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
// norm: per channel (mean, 1/std)
@group(0) @binding(2) var<storage, read> params: array<f32>;

const WG: u32 = 256u;
var<workgroup> part_sum: array<f32, WG>;
var<workgroup> part_sq: array<f32, WG>;

// workgroup (z, c): dst[(z·C + c)·2 + {0, 1}] = Σv, Σv² over that channel-slice
@compute @workgroup_size(256, 1, 1)
fn stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = step.misc.z;
    let pair = wg.x * step.misc.w + wg.y;
    let base = pair * n;
    var s = 0.0;
    var q = 0.0;
    for (var i = li; i < n; i += WG) {
        let v = src[base + i];
        s += v;
        q = fma(v, v, q);
    }
    part_sum[li] = s;
    part_sq[li] = q;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if li < k {
            part_sum[li] += part_sum[li + k];
            part_sq[li] += part_sq[li + k];
        }
        workgroupBarrier();
    }
    if li == 0u {
        dst[pair * 2u] = part_sum[0];
        dst[pair * 2u + 1u] = part_sq[0];
    }
}

@compute @workgroup_size(256, 1, 1)
fn norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= step.misc.z {
        return;
    }
    let c = (i / step.misc.x) % step.misc.w;
    dst[i] = activate((dst[i] - params[2u * c]) * params[2u * c + 1u], ACT);
}
