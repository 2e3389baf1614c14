// The 1×1×1 logits head and the argmax over classes (ties → the lowest class), one
// invocation per (x, y) of one z-slice; labels go to a box-sized u32 buffer.

override CIN: u32;
override COUT: u32;
override EX: u32;
override EY: u32;

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> labels: array<u32>;
// weights [co][ci], then the COUT biases
@group(0) @binding(2) var<storage, read> params: array<f32>;

@compute @workgroup_size(16, 8, 1)
fn head(@builtin(global_invocation_id) gid: vec3<u32>) {
    if gid.x >= step.rect.z || gid.y >= step.rect.w {
        return;
    }
    let x = step.rect.x + gid.x;
    let y = step.rect.y + gid.y;
    let plane = EX * EY;
    var v: array<f32, MAXC>;
    let slots = conv_slots(gid.z);
    let z_box = select(step.misc.y, gid.z, step.misc.w == 1u);
    let base = u32(slots.y) * CIN * plane + y * EX + x;
    for (var ci = 0u; ci < CIN; ci++) {
        v[ci] = src[base + ci * plane];
    }
    var best = 0u;
    var best_logit = 0.0;
    for (var co = 0u; co < COUT; co++) {
        var s = params[COUT * CIN + co];
        for (var ci = 0u; ci < CIN; ci++) {
            s = fma(params[co * CIN + ci], v[ci], s);
        }
        if co == 0u || s > best_logit {
            best = co;
            best_logit = s;
        }
    }
    labels[(z_box * step.rect.w + gid.y) * step.rect.z + gid.x] = best;
}
