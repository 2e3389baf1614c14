// Prints the licence notices of NiiVue's bundle: NiiVue's own, then those of the packages
// its dist/index.js bundles (read from its esbuild metafile), for /pkg/niivue.licences.txt.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const modules = process.argv[2];
const niivue = join(modules, "@niivue/niivue");
const meta = JSON.parse(readFileSync(join(niivue, "dist/metafile-esm.json"), "utf8"));
const bundled = new Set();
for (const input of Object.keys(meta.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (m) bundled.add(m[1]);
}

// NiiVue's npm package carries no licence file; this is its repository's LICENSE.
const NIIVUE_LICENSE = `BSD 2-Clause License

Copyright (c) 2021, Niivue
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
`;

const version = (dir) => JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).version;
let out = `The slice viewer bundles NiiVue ${version(niivue)} and the packages below.\n\n== @niivue/niivue (BSD-2-Clause)\n\n${NIIVUE_LICENSE}`;
for (const name of [...bundled].sort()) {
  const dir = join(modules, name);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
  if (!file) throw new Error(`${name}: no licence file to reproduce`);
  out += `\n== ${name} ${pkg.version} (${pkg.license})\n\n${readFileSync(join(dir, file), "utf8").trim()}\n`;
}
process.stdout.write(out);
