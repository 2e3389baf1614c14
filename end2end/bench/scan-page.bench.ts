import { expect } from "@playwright/test";

import { signUp, test, uploadAndWait } from "../tests/kit";

// Speed of the results page (bench/scan-page.sh): the server's render of a processed scan's
// page with all its regions, the page's hydration, the browser's redraw of the centile chart
// when another region is picked, and the slice viewer's first slices (from the viewer's
// start to both volumes drawn). Medians are printed; nothing here is a pass/fail threshold.

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

test("results page speed", async ({ page }) => {
  const runs = Number(process.env.NEUROVOL_BENCH_RUNS ?? 20);
  await signUp(page, `bench-${Date.now()}@example.org`);
  await uploadAndWait(page, "t1_mprage_sag_phi.zip");

  // the server's render: the whole page (every region, the charts), over loopback
  const url = page.url();
  const render: number[] = [];
  for (let i = 0; i < runs + 2; i++) {
    const t0 = performance.now();
    const r = await page.request.get(url);
    await r.body();
    if (i >= 2) render.push(performance.now() - t0);
  }
  const rows = await page.getByTestId("region-row").count();

  // the browser's redraw of the chart for each charted region in turn
  await page.waitForFunction(() => (window as any).__neurovol_hydrated === true);
  const switches: number[] = await page.evaluate(async (runs) => {
    const select = document.querySelector("[data-testid=chart-region]") as HTMLSelectElement;
    const chart = document.querySelector("[data-testid=chart]")!;
    const names = Array.from(select.options).map((o) => o.value);
    const times: number[] = [];
    for (let i = 0; i < Math.max(runs, names.length); i++) {
      const name = names[i % names.length] === select.value ? names[(i + 1) % names.length] : names[i % names.length];
      const label = `Centile chart of ${Array.from(select.options).find((o) => o.value === name)!.text}:`;
      const drawn = () => chart.querySelector("svg")?.getAttribute("aria-label")?.startsWith(label);
      const t0 = performance.now();
      select.value = name;
      select.dispatchEvent(new Event("change", { bubbles: true }));
      while (!drawn()) {
        await new Promise((r) => setTimeout(r, 0));
      }
      // until the new chart is laid out
      chart.querySelector("svg")!.getBoundingClientRect();
      times.push(performance.now() - t0);
    }
    return times;
  }, runs);
  // a fresh load of the page: until it is hydrated, and until the viewer shows its slices
  const viewerRuns = Math.max(3, Math.round(runs / 4));
  const hydrated: number[] = [];
  const firstSlices: number[] = [];
  for (let i = 0; i < viewerRuns; i++) {
    const t0 = Date.now();
    await page.goto(url);
    await page.waitForFunction(() => (window as any).__neurovol_hydrated === true);
    hydrated.push(Date.now() - t0);
    const viewer = page.getByTestId("viewer");
    await viewer.scrollIntoViewIfNeeded();
    await expect(viewer).toHaveAttribute("data-state", "ready", { timeout: 120_000 });
    firstSlices.push(Number(await viewer.getAttribute("data-first-slices-ms")));
  }
  console.log(`page load to hydrated: median ${median(hydrated).toFixed(0)} ms over ${hydrated.length}`);
  console.log(
    `viewer, start to first slices (both volumes): median ${median(firstSlices).toFixed(0)} ms over ${firstSlices.length} ` +
      `(WebGL: ${await page.evaluate(() => {
        const gl = document.createElement("canvas").getContext("webgl2");
        const info = gl?.getExtension("WEBGL_debug_renderer_info");
        return gl ? gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER) : "none";
      })})`,
  );
  console.log(`server render of the scan page (${rows} regions): median ${median(render).toFixed(1)} ms over ${render.length}`);
  console.log(`chart redraw in the browser: median ${median(switches).toFixed(1)} ms over ${switches.length} region switches`);
});
