import { test as base, expect, Page } from "@playwright/test";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

// What the browser tests share: the fixtures folder, signing up, a real drag and drop, and
// a `test` that fails on any Content-Security-Policy violation in the page.

/** Every test records `securitypolicyviolation` events (and the console's CSP errors, which
 *  also cover workers) on every page it visits, and fails if there is any. */
export const test = base.extend<{ cspViolations: string[] }>({
  cspViolations: [
    async ({ page }, use) => {
      const seen: string[] = [];
      await page.exposeBinding("__nvCspViolation", (_source, text: string) => {
        seen.push(text);
      });
      await page.addInitScript(() => {
        document.addEventListener("securitypolicyviolation", (e) =>
          (window as any).__nvCspViolation(`${e.violatedDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`),
        );
      });
      page.on("console", (m) => {
        if (m.type() === "error" && /Content Security Policy/i.test(m.text())) seen.push(m.text());
      });
      await use(seen);
      expect(seen, "Content-Security-Policy violations").toEqual([]);
    },
    { auto: true },
  ],
});

export const fixtures = process.env.NEUROVOL_FIXTURES ?? path.resolve(__dirname, "../../../shared/fixtures");
export const password = "violet harbour lantern 42";

export async function signUp(page: Page, address: string) {
  await page.goto("/signup");
  await page.getByLabel("Email").fill(address);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByLabel("Repeat password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/home$/);
}

/** A REAL drag and drop onto the upload page's drop zone: a DataTransfer built in the page
 *  from the fixture's bytes, with the enter/over/drop events a browser sends. */
export async function dropFixture(page: Page, name: string) {
  // a fixture's name, or the path of a rewritten copy (`rescan`)
  const file = path.isAbsolute(name) ? name : path.join(fixtures, name);
  const b64 = fs.readFileSync(file).toString("base64");
  name = path.basename(file);
  const dataTransfer = await page.evaluateHandle(
    ({ b64, name }) => {
      const bin = atob(b64);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], name, { type: "application/zip" }));
      return dt;
    },
    { b64, name },
  );
  const zone = page.getByTestId("dropzone");
  await zone.dispatchEvent("dragenter", { dataTransfer });
  await zone.dispatchEvent("dragover", { dataTransfer });
  await expect(zone).toHaveClass(/hover/);
  await zone.dispatchEvent("drop", { dataTransfer });
}

/** The test kit's fixture rewriter (`end2end/fixture_rewriter.py`): a copy of a fixture as if
 *  the person were scanned again on `studyDate` (YYYYMMDD), at `age`, perhaps on another
 *  scanner model; written to `out`. */
export function rescan(
  fixture: string,
  out: string,
  change: { studyDate: string; age: string; scannerModel?: string; salt: string },
): string {
  const python = execFileSync("bash", [path.resolve(__dirname, "../../scripts/py-venv.sh")], { encoding: "utf8" })
    .trim()
    .split("\n")
    .pop()!;
  const args = [
    path.resolve(__dirname, "../fixture_rewriter.py"),
    path.join(fixtures, fixture),
    out,
    "--study-date",
    change.studyDate,
    "--age",
    change.age,
    "--salt",
    change.salt,
  ];
  if (change.scannerModel) args.push("--scanner-model", change.scannerModel);
  execFileSync(python, args, { stdio: "inherit" });
  return out;
}

/** Uploads a series through the upload page (drop, de-identify, confirm) and waits, as a
 *  person would, until the real pipeline has its results; returns the scan page's URL. */
export async function uploadAndWait(page: Page, fixture: string): Promise<{ url: string; dropped: number; confirmed: number }> {
  await page.goto("/upload");
  await page.waitForFunction(() => (window as any).__neurovol_hydrated === true);
  const dropped = Date.now();
  await dropFixture(page, fixture);
  await expect(page.getByTestId("series-row")).toHaveCount(1, { timeout: 60_000 });
  await page.getByTestId("deidentify").click();
  await expect(page.getByTestId("removal-report")).toBeVisible({ timeout: 120_000 });
  await page.getByTestId("confirm-upload").click();
  await expect(page).toHaveURL(/\/scans\/[0-9a-f]{32}$/, { timeout: 120_000 });
  const confirmed = Date.now();
  // the page refreshes itself while processing; poll it ourselves as a person would
  const status = page.getByTestId("scan-status");
  await expect
    .poll(
      async () => {
        await page.reload();
        const s = await status.getAttribute("data-status");
        expect(s, "the scan failed").not.toBe("failed");
        return s;
      },
      { timeout: 840_000, intervals: [5_000] },
    )
    .toBe("done");
  return { url: page.url(), dropped, confirmed };
}
