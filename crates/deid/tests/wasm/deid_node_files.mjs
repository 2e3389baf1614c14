// WASM per-file benchmark (same measure as `files` in deid_bench / deid_pydicom.py):
//   node deid_node_files.mjs WASM ZIP RUNS MB
import fs from "node:fs";

const [wasmPath, zipPath, runsArg, mbArg] = process.argv.slice(2);
const mod = new WebAssembly.Module(fs.readFileSync(wasmPath));
const imports = {};
for (const imp of WebAssembly.Module.imports(mod)) {
  imports[imp.module] ??= {};
  imports[imp.module][imp.name] = () => { throw new Error(`unexpected import ${imp.name}`); };
}
const x = new WebAssembly.Instance(mod, imports).exports;
const zip = fs.readFileSync(zipPath);
const zp = x.nv_alloc(zip.length);
new Uint8Array(x.memory.buffer, zp, zip.length).set(zip);
const n = x.nv_load_files(zp, zip.length);
const times = [];
for (let i = 0; i < Number(runsArg || 9); i++) {
  const t = process.hrtime.bigint();
  if (x.nv_deid_loaded(i) === 0n) { console.error("deid failed"); process.exit(2); }
  times.push(Number(process.hrtime.bigint() - t) / 1e9);
}
times.sort((a, b) => a - b);
const med = times[Math.floor(times.length / 2)];
const mb = Number(mbArg || 0);
console.log(JSON.stringify({ impl: "rust-wasm32-node" + process.version, measure: "files", files: n, mb,
  median_s: +med.toFixed(4), files_per_s: Math.round(n / med), mb_per_s: mb ? +(mb / med).toFixed(1) : null,
  runs: times.length }));
