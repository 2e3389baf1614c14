import { defineConfig } from "@playwright/test";

import { app, oidc, queued } from "./servers";

function webServer(s: { port: number; dataDir: string; url: string }, env: Record<string, string> = {}) {
  return {
    // the debug build; bench/drop-to-done.sh asks for the release build run.sh serves
    command: `../scripts/serve.sh ${process.env.NEUROVOL_E2E_PROFILE ?? "debug"} ${s.dataDir}`,
    url: `${s.url}/`,
    env: { LEPTOS_SITE_ADDR: `127.0.0.1:${s.port}`, NEUROVOL_LOG: process.env.NEUROVOL_LOG ?? "warn", ...env },
    reuseExistingServer: !process.env.CI,
    timeout: 120_000,
    stdout: "pipe" as const,
    stderr: "pipe" as const,
  };
}

export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  outputDir: "test-results",
  use: {
    baseURL: app.url,
    // an action on something that never appears fails, instead of waiting out the test
    actionTimeout: 30_000,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    launchOptions: {
      // Debian's Chromium; Playwright's own browser download is not available here.
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--headless",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
      ],
    },
  },
  webServer: [
    {
      command: `node oidc-provider.mjs ${oidc.port} ${oidc.controlPort}`,
      url: `${oidc.issuer}/.well-known/openid-configuration`,
      reuseExistingServer: !process.env.CI,
      timeout: 30_000,
      stdout: "pipe" as const,
      stderr: "pipe" as const,
    },
    webServer(app, {
      NEUROVOL_GOOGLE_ISSUER: oidc.issuer,
      NEUROVOL_GOOGLE_CLIENT_ID: oidc.clientId,
      NEUROVOL_GOOGLE_CLIENT_SECRET: oidc.clientSecret,
    }),
    webServer(queued, { NEUROVOL_PIPELINE_CONCURRENCY: "0" }),
  ],
});
