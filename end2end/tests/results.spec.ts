import AxeBuilder from "@axe-core/playwright";
import { expect } from "@playwright/test";
import * as fs from "fs";

import { rescan, signUp, test, uploadAndWait } from "./kit";

// The main job, end to end in real Chromium against the server as run.sh runs it: sign up,
// drop the PHI T1 series, review, confirm, and wait while the real pipeline (dcm2niix, the
// local CPU segmentation worker, the normative reference) takes the scan to its results.

test("a dropped T1 series reaches its results: the thalamus with a volume, a percentile and its band", async ({ page }) => {
  test.setTimeout(900_000);
  await signUp(page, `results-${Date.now()}@example.org`);
  const { dropped, confirmed: started } = await uploadAndWait(page, "t1_mprage_sag_phi.zip");
  const secs = (t: number) => ((Date.now() - t) / 1000).toFixed(1);
  // bench/drop-to-done.sh reads this line
  console.log(`drop → done ${secs(dropped)} s (upload confirmed → done ${secs(started)} s)`);

  await expect(page.getByTestId("scan-retrying")).toHaveCount(0);
  // the slice viewer (below the chart) waits until it comes near the screen
  await expect(page.getByTestId("viewer")).toHaveAttribute("data-state", "waiting");
  for (const side of ["Left", "Right"]) {
    const row = page.locator(`[data-testid=region-row][data-name="${side}-Thalamus-Proper"]`);
    await expect(row).toHaveCount(1);
    const cell = (col: string) => row.locator(`td[data-col=${col}]`);
    await expect(cell("region")).toHaveText(`Thalamus — ${side.toLowerCase()}`);
    await expect(row).toHaveAttribute("data-group", "subcortical");
    const volumeMl = Number((await cell("volume").innerText()).trim());
    expect(volumeMl).toBeGreaterThan(4);
    expect(volumeMl).toBeLessThan(11);
    const percentile = Number(await cell("percentile").getAttribute("data-value"));
    expect(percentile).toBeGreaterThanOrEqual(0);
    expect(percentile).toBeLessThanOrEqual(100);
    // its band: one SD of our method's and the site's uncertainty, around the percentile
    // "(17–27)", or "(<3)" / "(>97)" where it reaches an end
    const m = (await cell("percentile").getByTestId("percentile-band").innerText()).match(
      /^ ?\((?:(\d+)–(\d+)|<(\d+)|>(\d+))\)$/,
    )!;
    const low = m[1] ? Number(m[1]) : m[4] ? Number(m[4]) : 0;
    const high = m[2] ? Number(m[2]) : m[3] ? Number(m[3]) : 100;
    expect(low).toBeLessThanOrEqual(Math.ceil(percentile));
    expect(high).toBeGreaterThanOrEqual(Math.floor(percentile));
    expect(high).toBeGreaterThan(low);
    // % of the brain-mask volume, the usual range for the age and sex, the band, left/right
    const share = Number((await cell("icv-share").innerText()).trim());
    expect(share).toBeGreaterThan(0.2);
    expect(share).toBeLessThan(1.0);
    const [lo, hi] = (await cell("range").innerText()).split("–").map(Number);
    expect(lo).toBeGreaterThan(3.5);
    expect(hi).toBeGreaterThan(lo);
    expect(hi).toBeLessThan(12);
    // the percentile and the range agree: outside the range exactly when flagged
    const outside = volumeMl < lo || volumeMl > hi;
    const flag = await cell("note").getAttribute("data-flag");
    if (outside) expect(flag).toMatch(/^(below_5th|above_95th|implausible_for_age)$/);
    await expect(cell("band").getByTestId("band")).toHaveAttribute(
      "aria-label",
      /percentile \(likely between (the|below the) \d+\w\w and (the|above the) \d+\w\w\), usual range 5th to 95th/,
    );
    await expect(cell("asymmetry")).toHaveText(/^[+-]\d+\.\d %$/);
  }
  // the two sides' asymmetry is the same number
  const asym = await page.locator('[data-testid=region-row][data-name$="-Thalamus-Proper"] td[data-col=asymmetry]').allInnerTexts();
  expect(new Set(asym).size).toBe(1);
  await expect(page.getByTestId("percentile-meaning")).toContainText("not a diagnosis");
  await expect(page.getByTestId("quality")).toHaveAttribute("data-ok", "true");
  await expect(page.getByTestId("quality")).toHaveAttribute("data-grade", /^[AB]$/);
  await expect(page.getByTestId("calibration")).toHaveText("none — braincharts training-site average");
  await expect(page.getByTestId("validity")).toContainText("FreeSurfer");
  // a structure our method does not measure as FreeSurfer does: no percentile, and why
  const biased = page.locator('[data-testid=region-row][data-name="Left-Putamen"] td[data-col=note]');
  await expect(biased).toHaveAttribute("data-no-percentile", "method_biased");
  await expect(biased).toContainText("differ from FreeSurfer's by");
  await expect(page.locator('[data-testid=region-row][data-name="Left-Putamen"] td[data-col=percentile]')).toHaveText("—");
  // a region without a normative model says why
  const unmodelled = page.locator('[data-testid=region-row] td[data-col=note][data-no-percentile=no_model]');
  expect(await unmodelled.count()).toBeGreaterThan(0);
  await expect(unmodelled.first()).toHaveText("no normative model for this region");
  await expect(page.getByTestId("scan-facts")).toContainText("Intracranial volume");
  // every region in a group; the cortex folded under each hemisphere
  const rows = page.getByTestId("region-row");
  expect(await rows.count()).toBeGreaterThan(100);
  for (const group of await rows.evaluateAll((rs) => rs.map((r) => r.getAttribute("data-group")))) {
    expect(group).toMatch(/^(whole_brain|subcortical|ventricles|cerebellum|brain_stem|white_matter|cortex_left|cortex_right|other)$/);
  }
  expect(await page.getByTestId("group-cortex_left").locator("[data-testid=region-row]").count()).toBeGreaterThan(30);
  // FreeSurfer's sum of the deep grey structures, a region of the reference's own
  const deepGrey = page.locator('[data-testid=region-row][data-name="SubCortGrayVol"]');
  await expect(deepGrey).toHaveAttribute("data-group", "subcortical");
  await expect(deepGrey).toContainText("All deep grey matter");
  // and its sums over the whole brain, under their own heading
  for (const name of ["TotalGrayVol", "SupraTentorialVolNotVent", "SupraTentorialVol"]) {
    await expect(page.locator(`[data-testid=region-row][data-name="${name}"]`)).toHaveAttribute("data-group", "whole_brain");
  }

  // the overview: one dot per region with a percentile, at its value
  const scored = page.locator("[data-testid=region-row] td[data-col=percentile][data-value]");
  await expect(page.getByTestId("overview-point")).toHaveCount(await scored.count());
  const thalamusDot = page.locator('[data-testid=overview-point][data-name="Left-Thalamus-Proper"]');
  await expect(thalamusDot).toHaveAttribute(
    "data-value",
    (await page.locator('[data-testid=region-row][data-name="Left-Thalamus-Proper"] td[data-col=percentile]').getAttribute("data-value"))!,
  );

  // the centile chart: drawn by the server, redrawn in the browser without a page load
  await page.waitForFunction(() => (window as any).__neurovol_hydrated === true);
  await page.evaluate(() => ((window as any).__same_page = true));
  const chart = page.getByTestId("chart");
  // it opens on the table's first region with a percentile: the deep grey matter as a whole,
  // which has no other side
  await expect(chart).toHaveAttribute("data-region", "SubCortGrayVol");
  await expect(chart.locator("svg[role=img]")).toHaveAttribute("aria-label", /Centile chart of All deep grey matter/);
  await expect(page.getByTestId("chart-side")).toBeDisabled();
  await page.getByTestId("chart-region").selectOption({ label: "Thalamus — left" });
  await expect(chart).toHaveAttribute("data-region", "Left-Thalamus-Proper");
  await expect(chart.locator("svg[role=img]")).toHaveAttribute("aria-label", /Centile chart of Thalamus — left/);
  // a region whose percentile is withheld gets no chart: no dot among centiles it may not sit on
  await expect(page.getByTestId("chart-region").locator("option", { hasText: "Putamen — left" })).toHaveCount(0);
  await expect(chart.getByTestId("chart-point")).toHaveCount(1);
  await page.getByTestId("chart-region").selectOption({ label: "Lateral ventricle — left" });
  await expect(chart).toHaveAttribute("data-region", "Left-Lateral-Ventricle");
  await expect(chart.locator("svg")).toHaveAttribute("aria-label", /Lateral ventricle — left/);
  await page.getByTestId("chart-side").click();
  await expect(chart).toHaveAttribute("data-region", "Right-Lateral-Ventricle");
  await expect(chart.locator("svg")).toHaveAttribute("aria-label", /Lateral ventricle — right/);
  // a region's name in the table picks it too
  await page.locator('[data-testid=region-row][data-name="Right-Thalamus-Proper"] [data-testid=chart-link]').click();
  await expect(chart).toHaveAttribute("data-region", "Right-Thalamus-Proper");
  expect(await page.evaluate(() => (window as any).__same_page)).toBe(true);
  expect(page.url()).not.toContain("region=");
  // hovering the scan's point reads its value; hovering the plot reads the centiles there
  const point = chart.getByTestId("chart-point").first();
  await point.hover();
  const rightMl = await page.locator('[data-testid=region-row][data-name="Right-Thalamus-Proper"] td[data-col=volume]').innerText();
  await expect(page.getByTestId("chart-readout")).toContainText(`this scan`);
  await expect(page.getByTestId("chart-readout")).toContainText(`${rightMl} mL`);
  const box = (await chart.locator("svg").boundingBox())!;
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.5);
  await expect(page.getByTestId("chart-readout")).toContainText(/^At \d+ years, centiles \(mL\): 1st /);
  // the keyboard reaches the points: from the list, Tab to the side button, then the point
  await page.getByTestId("chart-region").focus();
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  expect(await page.evaluate(() => document.activeElement?.getAttribute("data-testid"))).toBe("chart-point");
  await expect(page.getByTestId("chart-readout")).toContainText("this scan");
  await page.getByTestId("chart-section").screenshot({ path: test.info().outputPath("region-chart.png") });
  // without JavaScript the table's links load the page with the region asked for
  const linked = await page.request.get(`${page.url().split("#")[0]}?region=Right-VentralDC`);
  expect(await linked.text()).toContain('data-region="Right-VentralDC"');

  // the slice viewer: both volumes through the short-lived signed URLs; moving the slices
  // changes the canvas; hovering names a region; a table row centres the slices on it
  const viewer = page.getByTestId("viewer");
  await viewer.scrollIntoViewIfNeeded();
  await expect(viewer).toHaveAttribute("data-state", "ready", { timeout: 60_000 });
  await expect(viewer).toHaveAttribute("data-volumes", "2");
  console.log(`viewer: first slices ${await viewer.getAttribute("data-first-slices-ms")} ms after opening`);
  const canvas = page.getByTestId("viewer-canvas");
  await canvas.scrollIntoViewIfNeeded();
  const cbox = (await canvas.boundingBox())!;
  const before = await canvas.screenshot();
  await page.mouse.click(cbox.x + cbox.width * 0.2, cbox.y + cbox.height * 0.35);
  await expect.poll(async () => (await canvas.screenshot()).equals(before), { timeout: 10_000 }).toBe(false);
  const readout = page.getByTestId("viewer-readout");
  // the click names what it landed on (a region from the table, or the background)
  await expect(readout).toHaveText(/^(Outside the labelled regions\.|.+: \d+\.\d\d mL, (percentile \d+\.\d|no percentile))$/);
  for (const [name, text] of [["Left-Thalamus-Proper", "Thalamus — left"], ["Right-Caudate", "Caudate — right"]]) {
    const mm = await viewer.getAttribute("data-mm");
    await page.locator(`[data-testid=region-row][data-name="${name}"] td[data-col=volume]`).click();
    await expect(viewer).toHaveAttribute("data-centred", name);
    await expect(viewer).not.toHaveAttribute("data-mm", mm!);
    const ml = await page.locator(`[data-testid=region-row][data-name="${name}"] td[data-col=volume]`).innerText();
    await expect(readout).toHaveText(new RegExp(`^${text}: ${ml} mL, percentile \\d+\\.\\d$`));
  }
  // hovering names the region under the pointer: here, where the slices are centred
  await canvas.scrollIntoViewIfNeeded();
  const onCrosshair = await viewer.evaluate((el: any) => {
    const p = el.nv.frac2canvasPos(el.nv.scene.crosshairPos);
    const r = el.nv.canvas.getBoundingClientRect();
    return p && [r.left + p[0] / (el.nv.uiData.dpr || 1), r.top + p[1] / (el.nv.uiData.dpr || 1)];
  });
  await page.mouse.move(onCrosshair![0], onCrosshair![1]);
  await expect(viewer).toHaveAttribute("data-hovered", "Right-Caudate");
  await expect(readout).toHaveText(/^Caudate — right: /);
  const shown = await canvas.screenshot();
  await page.getByTestId("viewer-opacity").fill("100");
  await expect.poll(async () => (await canvas.screenshot()).equals(shown)).toBe(false);
  // the outline toggle draws the regions' borders solid over fainter colours
  await page.getByTestId("viewer-opacity").fill("30");
  const faint = await canvas.screenshot();
  await page.getByTestId("viewer-outline").check();
  await expect.poll(async () => (await canvas.screenshot()).equals(faint)).toBe(false);
  await page.getByTestId("viewer").screenshot({ path: test.info().outputPath("viewer.png") });
  await page.getByTestId("viewer-outline").uncheck();
  // the chart's region list moves the slices too
  await page.getByTestId("chart-region").selectOption({ label: "Ventral diencephalon — right" });
  await expect(viewer).toHaveAttribute("data-centred", "Right-VentralDC");

  // no serious or critical accessibility problem on the results page (folded groups open)
  await page.locator("details").evaluateAll((ds) => ds.forEach((d) => ((d as HTMLDetailsElement).open = true)));
  const axe = await new AxeBuilder({ page }).analyze();
  const serious = axe.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(serious.map((v) => `${v.id} (${v.nodes.length}): ${v.nodes[0]?.target}`)).toEqual([]);

  // downloads: the CSV is the JSON's rows; the normal limits are the page's ranges
  const scanUrl = page.url();
  const file = async (name: string) => {
    const r = await page.request.get(`${scanUrl}/files/${name}`);
    expect(r.status(), name).toBe(200);
    return r;
  };
  const results = await (await file("results.json")).json();
  const csvRows = (await (await file("regions.csv")).text()).trim().split("\n").slice(1).map((l) => l.split(","));
  expect(csvRows.length).toBe(results.regions.length);
  for (const region of results.regions) {
    const row = csvRows.find((r) => r[0] === region.name)!;
    expect(Number(row[2])).toBeCloseTo(region.volume_mm3, 0);
  }
  const limits = (await (await file("normal-limits.csv")).text()).trim().split("\n");
  expect(limits[0]).toBe("region,sex,age_years,p1,p5,p25,p50,p75,p95,p99");
  const age = String(results.age_years);
  const hip = limits.map((l) => l.split(",")).find((r) => r[0] === "Left-Hippocampus" && r[2] === age)!;
  expect(hip[1]).toBe(results.sex);
  const range = await page.locator('[data-testid=region-row][data-name="Left-Hippocampus"] td[data-col=range]').innerText();
  expect(range).toBe(`${(Number(hip[4]) / 1000).toFixed(2)}–${(Number(hip[8]) / 1000).toFixed(2)}`);

  // the printable report: the facts, the main regions, three slices with the regions in
  // colour; Chromium prints it on one A4 page
  await page.goto(`${scanUrl}/report`);
  await expect(page.getByTestId("report")).toBeVisible();
  await expect(page.getByTestId("report-quality")).toContainText(/^grade [AB]: /);
  await expect(page.getByTestId("report-calibration")).toHaveText("none — braincharts training-site average");
  await expect(page.locator('[data-testid=report-regions] tr[data-name="Left-Thalamus-Proper"] td').nth(3)).toHaveText(
    /^\d+\.\d \((\d+–\d+|<\d+|>\d+)\)$/,
  );
  await expect(page.locator('[data-testid=report-regions] tr[data-name="Left-Hippocampus"]')).toHaveCount(1);
  const slices = page.getByTestId("report-slice");
  await expect(slices).toHaveCount(3);
  for (const img of await slices.all()) {
    await expect.poll(() => img.evaluate((i: HTMLImageElement) => i.complete && i.naturalWidth)).toBeGreaterThan(100);
  }
  await page.screenshot({ path: test.info().outputPath("report.png"), fullPage: true });
  // as printed (A4 less 10 mm margins: 718 px wide, 1047 px to a page)
  await page.emulateMedia({ media: "print" });
  const screen = page.viewportSize()!;
  await page.setViewportSize({ width: 718, height: 1047 });
  await page.screenshot({ path: test.info().outputPath("report-print.png"), fullPage: true });
  console.log(`report as printed: ${await page.evaluate(() => document.documentElement.scrollHeight)} px of 1047`);
  await page.setViewportSize(screen);
  await page.emulateMedia({ media: null });
  const pdf = await page.pdf({ format: "A4", printBackground: true });
  fs.writeFileSync(test.info().outputPath("report.pdf"), pdf);
  const pages = pdf.toString("latin1").match(/\/Type\s*\/Page(?!s)/g) ?? [];
  expect(pages.length, "the report prints on one page").toBe(1);
  await page.goto(scanUrl);

  // what we keep: the volume without its face, shown as its middle slice; no DICOM archive
  const midline = page.getByTestId("midline").locator("img");
  await expect(midline).toBeVisible();
  await expect.poll(() => midline.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBeGreaterThan(100);
  await expect(page.locator("main")).toContainText("The face was removed from the 3D volume");
  await expect(page.locator('[data-file="dicom-deidentified.zip"]')).toHaveCount(0);
  await page.screenshot({ path: test.info().outputPath("scan-page-defaced.png"), fullPage: true });

  // change over time: the same series as if scanned again 2½ years later (the test kit's
  // fixture rewriter), then on another scanner model four months after that
  const later = rescan("t1_mprage_sag_phi.zip", test.info().outputPath("rescan-2021.zip"), {
    studyDate: "20210920",
    age: "069Y",
    salt: "2021",
  });
  await uploadAndWait(page, later);
  // the later scan's chart shows both scans
  await expect(page.getByTestId("chart").getByTestId("chart-point")).toHaveCount(2);
  await page.goto("/home");
  await page.getByTestId("timeline-link").click();
  await expect(page).toHaveURL(/\/timeline$/);
  await expect(page.getByTestId("timeline-scan")).toHaveCount(2);
  await expect(page.getByTestId("timeline-scan").first().locator("td[data-col=scanner]")).toHaveText("SIEMENS Prisma_fit, 3 T");
  await expect(page.getByTestId("timeline-changes")).toHaveAttribute("data-region", "Left-Hippocampus");
  const step = page.getByTestId("timeline-step");
  await expect(step).toHaveCount(1);
  await expect(step).toHaveAttribute("data-warnings", "");
  // the same pixels measure the same: no change; the hippocampus has no percentile (our
  // method's is withheld), so no centile curve to read the expected change from
  await expect(step.locator("td[data-col=annualised]")).toHaveText("+0.0 %");
  await expect(step.locator("td[data-col=expected]")).toHaveText("—");
  // its volumes are charted alone, without the reference's curves, and the page says why
  await expect(page.getByTestId("chart-no-reference")).toBeVisible();
  await expect(page.getByTestId("chart").locator("svg")).toHaveAttribute("aria-label", /without the reference's centiles/);
  expect(await page.getByTestId("timeline-region").count()).toBeGreaterThan(20);
  await expect(page.getByTestId("last-step-caveat")).toHaveCount(0);
  // another region, without a page load
  await page.waitForFunction(() => (window as any).__neurovol_hydrated === true);
  await page.getByTestId("chart-region").selectOption({ label: "Putamen — left" });
  await expect(page.getByTestId("timeline-changes")).toHaveAttribute("data-region", "Left-Putamen");
  await expect(page.getByTestId("chart").getByTestId("chart-point")).toHaveCount(2);
  // a region with a percentile has the reference's curves
  await page.getByTestId("chart-region").selectOption({ label: "Lateral ventricle — left" });
  await expect(page.getByTestId("chart").locator("svg")).toHaveAttribute("aria-label", /1st to 99th centiles/);
  await expect(page.getByTestId("chart-no-reference")).toHaveCount(0);

  const otherScanner = rescan("t1_mprage_sag_phi.zip", test.info().outputPath("rescan-2022.zip"), {
    studyDate: "20220120",
    age: "069Y",
    scannerModel: "Skyra",
    salt: "2022",
  });
  await uploadAndWait(page, otherScanner);
  await page.goto("/timeline");
  const steps = page.getByTestId("timeline-step");
  await expect(steps).toHaveCount(2);
  await expect(steps.nth(1)).toHaveAttribute("data-warnings", "scanner short_interval");
  await expect(steps.nth(1).getByTestId("comparability")).toContainText(
    "Different scanners (SIEMENS Prisma_fit, 3 T, then SIEMENS Skyra, 3 T)",
  );
  await expect(steps.nth(1).getByTestId("comparability")).toContainText("Only 4 months apart");
  await expect(page.getByTestId("last-step-caveat")).toHaveText(
    "Read these with care: different scanners; less than 6 months apart.",
  );
  await page.screenshot({ path: test.info().outputPath("timeline.png"), fullPage: true });
});
