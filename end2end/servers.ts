import * as fs from "fs";
import * as os from "os";
import * as path from "path";

// The two servers the suite runs, both started by scripts/serve.sh on the debug build with
// a fresh data dir (ports and dirs chosen by scripts/test.sh):
// - `app`: as run.sh runs it, the pipeline on, so an uploaded scan reaches its results;
// - `queued`: the pipeline off (NEUROVOL_PIPELINE_CONCURRENCY=0), for tests that look at a
//   scan right after its upload.
function server(portVar: string, defaultPort: number, dirVar: string) {
  const port = Number(process.env[portVar] ?? defaultPort);
  const dataDir = process.env[dirVar] ?? fs.mkdtempSync(path.join(os.tmpdir(), "neurovol-e2e-"));
  return { port, dataDir, url: `http://127.0.0.1:${port}` };
}

export const app = server("NEUROVOL_E2E_PORT", 3100, "NEUROVOL_E2E_DATA_DIR");
export const queued = server("NEUROVOL_E2E_QUEUED_PORT", 3101, "NEUROVOL_E2E_QUEUED_DATA_DIR");

// The OpenID provider `app` offers as Google sign-in (oidc-provider.mjs, a real provider on
// loopback), and the port where a test sets how its next ID tokens are made.
const oidcPort = Number(process.env.NEUROVOL_E2E_OIDC_PORT ?? 3102);
const oidcControlPort = Number(process.env.NEUROVOL_E2E_OIDC_CONTROL_PORT ?? 3103);
export const oidc = {
  port: oidcPort,
  controlPort: oidcControlPort,
  issuer: `http://127.0.0.1:${oidcPort}`,
  control: `http://127.0.0.1:${oidcControlPort}`,
  clientId: "neurovol-e2e-client",
  clientSecret: "neurovol-e2e-client-secret",
};
