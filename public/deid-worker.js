// NeuroVol's de-identification Web Worker (module worker). Runs the `deid` crate compiled
// to WASM (crates/deid-wasm → /pkg/deid_worker*.{js,wasm}) off the main thread.
//
// Messages in:  {type: "inspect", file: File|Blob}
//               {type: "deidentify", series: <index>}
// Messages out: {type: "inventory", json}           series list (LOCAL-ONLY descriptions)
//               {type: "progress", done, total}     files de-identified so far
//               {type: "result", json, zip, ms}     summary JSON (LOCAL-ONLY removal values)
//                                                   and the de-identified ZIP (ArrayBuffer)
//               {type: "error", json}               {"code", "message"}
// Nothing here talks to the network: the page uploads only `zip`.
import init, { DeidJob } from "/pkg/deid_worker.js";

const ready = init({ module_or_path: "/pkg/deid_worker_bg.wasm" });
let job = null;

function fail(e) {
  let json = typeof e === "string" ? e : JSON.stringify({ code: "internal", message: String(e && e.message || e) });
  try { JSON.parse(json); } catch (_) { json = JSON.stringify({ code: "internal", message: json }); }
  postMessage({ type: "error", json });
}

onmessage = async (ev) => {
  const msg = ev.data || {};
  try {
    await ready;
    if (msg.type === "inspect") {
      if (job) { job.free(); job = null; }
      const bytes = new Uint8Array(await msg.file.arrayBuffer());
      job = new DeidJob(bytes);
      postMessage({ type: "inventory", json: job.inspect() });
    } else if (msg.type === "deidentify") {
      if (!job) throw new Error("no archive loaded");
      const t0 = performance.now();
      const seed = crypto.getRandomValues(new Uint8Array(32));
      const total = job.start(msg.series, seed, 1);
      postMessage({ type: "progress", done: 0, total });
      while (!job.done()) {
        const done = job.step(8);
        postMessage({ type: "progress", done, total });
      }
      const zip = job.finish();
      const json = job.summary();
      const ms = performance.now() - t0;
      const buf = zip.buffer.slice(zip.byteOffset, zip.byteOffset + zip.byteLength);
      postMessage({ type: "result", json, zip: buf, ms }, [buf]);
    }
  } catch (e) {
    fail(e);
  }
};
