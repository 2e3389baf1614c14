import { test as base, expect, Page } from "@playwright/test";
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
  const b64 = fs.readFileSync(path.join(fixtures, name)).toString("base64");
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
