// Runs the wasm32 build of examples/wasm_abi.rs under plain Node (no wasm-bindgen glue):
//   node deid_node.mjs WASM ZIP SEED_HEX64 OUT.zip STORED(0|1) RUNS [FILES MB]
// Writes the de-identified ZIP of the last run and prints one JSON line with the median;
// when the archive is refused, prints the error's JSON on stderr and exits with status 2.
// The zip crate links getrandom's wasm-bindgen imports; deid never calls them, so they
// are stubs that throw (a call would be a bug: output must depend on the seed only).
import fs from "node:fs";

const [wasmPath, zipPath, seedHex, outPath, stored, runsArg, filesArg, mbArg] = process.argv.slice(2);
const mod = new WebAssembly.Module(fs.readFileSync(wasmPath));
const imports = {};
for (const imp of WebAssembly.Module.imports(mod)) {
  imports[imp.module] ??= {};
  imports[imp.module][imp.name] = () => {
    throw new Error(`unexpected import call ${imp.module}.${imp.name}`);
  };
}
const inst = new WebAssembly.Instance(mod, imports);
const x = inst.exports;
const zip = fs.readFileSync(zipPath);
const seed = Buffer.from(seedHex, "hex");
const zp = x.nv_alloc(zip.length);
new Uint8Array(x.memory.buffer, zp, zip.length).set(zip);
const sp = x.nv_alloc(32);
new Uint8Array(x.memory.buffer, sp, 32).set(seed);
const runs = Number(runsArg || 1);
const times = [];
for (let i = 0; i < runs; i++) {
  const t = process.hrtime.bigint();
  const rc = x.nv_deid_zip(zp, zip.length, sp, Number(stored));
  times.push(Number(process.hrtime.bigint() - t) / 1e9);
  if (rc !== 0) {
    const err = Buffer.from(new Uint8Array(x.memory.buffer, x.nv_out_ptr(), x.nv_out_len())).toString();
    console.error(`deid failed: ${err}`);
    process.exit(2);
  }
}
const out = new Uint8Array(x.memory.buffer, x.nv_out_ptr(), x.nv_out_len());
fs.writeFileSync(outPath, out);
times.sort((a, b) => a - b);
const med = times[Math.floor(times.length / 2)];
const files = Number(filesArg || 0), mb = Number(mbArg || 0);
console.log(JSON.stringify({
  impl: "rust-wasm32-node" + process.version, measure: Number(stored) ? "zip_stored" : "zip_deflate6",
  files, mb, median_s: +med.toFixed(4), files_per_s: files ? Math.round(files / med) : null,
  mb_per_s: mb ? +(mb / med).toFixed(1) : null, runs,
}));
