// One output z-slice of a dilated 3×3×3 convolution (+ bias, + activation): one
// invocation per (x, y), every output channel in registers.

override CIN: u32;
override COUT: u32;
override ACT: u32;
override EX: u32;
override EY: u32;

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
// weights [tap][ci][co] (tap = (kz·3 + ky)·3 + kx), then the COUT biases
@group(0) @binding(2) var<storage, read> params: array<f32>;

@compute @workgroup_size(16, 8, 1)
fn conv(@builtin(global_invocation_id) gid: vec3<u32>) {
    if gid.x >= step.rect.z || gid.y >= step.rect.w {
        return;
    }
    let slots = conv_slots(gid.z);
    let x = i32(step.rect.x + gid.x);
    let y = i32(step.rect.y + gid.y);
    let d = i32(step.misc.x);
    let plane = EX * EY;
    var acc: array<f32, MAXC>;
    let bias = 27u * CIN * COUT;
    for (var co = 0u; co < COUT; co++) {
        acc[co] = params[bias + co];
    }
    for (var kz = 0u; kz < 3u; kz++) {
        let s = slots[kz];
        if s < 0 {
            continue;
        }
        for (var ky = 0u; ky < 3u; ky++) {
            let yy = y + (i32(ky) - 1) * d;
            if yy < 0 || yy >= i32(EY) {
                continue;
            }
            for (var kx = 0u; kx < 3u; kx++) {
                let xx = x + (i32(kx) - 1) * d;
                if xx < 0 || xx >= i32(EX) {
                    continue;
                }
                var si = u32(s) * CIN * plane + u32(yy) * EX + u32(xx);
                var wi = ((kz * 3u + ky) * 3u + kx) * CIN * COUT;
                for (var ci = 0u; ci < CIN; ci++) {
                    let v = src[si];
                    for (var co = 0u; co < COUT; co++) {
                        acc[co] = fma(params[wi + co], v, acc[co]);
                    }
                    si += plane;
                    wi += COUT;
                }
            }
        }
    }
    let out = u32(slots.w) * COUT * plane + u32(y) * EX + u32(x);
    for (var co = 0u; co < COUT; co++) {
        dst[out + co * plane] = activate(acc[co], ACT);
    }
}
