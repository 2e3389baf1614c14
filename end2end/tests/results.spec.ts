import { expect } from "@playwright/test";

import { dropFixture, signUp, test } from "./kit";

// The main job, end to end in real Chromium against the server as run.sh runs it: sign up,
// drop the PHI T1 series, review, confirm, and wait while the real pipeline (dcm2niix, the
// local CPU segmentation worker, the normative reference) takes the scan to its results.

test("a dropped T1 series reaches its results: the hippocampus with a volume and a percentile", async ({ page }) => {
  test.setTimeout(900_000);
  await signUp(page, `results-${Date.now()}@example.org`);
  await page.goto("/upload");
  await page.waitForFunction(() => (window as any).__neurovol_hydrated === true);
  const dropped = Date.now();
  await dropFixture(page, "t1_mprage_sag_phi.zip");
  await expect(page.getByTestId("series-row")).toHaveCount(1, { timeout: 60_000 });
  await page.getByTestId("deidentify").click();
  await expect(page.getByTestId("removal-report")).toBeVisible({ timeout: 120_000 });
  await page.getByTestId("confirm-upload").click();
  await expect(page).toHaveURL(/\/scans\/[0-9a-f]{32}$/, { timeout: 120_000 });
  const started = Date.now();

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
  const secs = (t: number) => ((Date.now() - t) / 1000).toFixed(1);
  // bench/drop-to-done.sh reads this line
  console.log(`drop → done ${secs(dropped)} s (upload confirmed → done ${secs(started)} s)`);

  await expect(page.getByTestId("scan-retrying")).toHaveCount(0);
  for (const side of ["Left", "Right"]) {
    const row = page.locator(`[data-testid=region-row][data-name="${side}-Hippocampus"]`);
    await expect(row).toHaveCount(1);
    const cells = row.locator("td");
    await expect(cells.nth(0)).toHaveText(`Hippocampus — ${side.toLowerCase()}`);
    await expect(row).toHaveAttribute("data-group", "subcortical");
    const volumeMl = Number((await cells.nth(1).innerText()).trim());
    expect(volumeMl).toBeGreaterThan(2);
    expect(volumeMl).toBeLessThan(6);
    const percentile = Number((await cells.nth(2).innerText()).trim());
    expect(percentile).toBeGreaterThanOrEqual(0);
    expect(percentile).toBeLessThanOrEqual(100);
  }
  await expect(page.getByTestId("scan-facts")).toContainText("Intracranial volume");
  // every region in a group; the cortex folded under each hemisphere
  const rows = page.getByTestId("region-row");
  expect(await rows.count()).toBeGreaterThan(100);
  for (const group of await rows.evaluateAll((rs) => rs.map((r) => r.getAttribute("data-group")))) {
    expect(group).toMatch(/^(subcortical|ventricles|cerebellum|brain_stem|white_matter|cortex_left|cortex_right|other)$/);
  }
  expect(await page.getByTestId("group-cortex_left").locator("[data-testid=region-row]").count()).toBeGreaterThan(30);

  // what we keep: the volume without its face, shown as its middle slice; no DICOM archive
  const midline = page.getByTestId("midline").locator("img");
  await expect(midline).toBeVisible();
  await expect.poll(() => midline.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBeGreaterThan(100);
  await expect(page.locator("main")).toContainText("The face was removed from the 3D volume");
  await expect(page.locator('[data-file="dicom-deidentified.zip"]')).toHaveCount(0);
  await page.screenshot({ path: test.info().outputPath("scan-page-defaced.png"), fullPage: true });
});
