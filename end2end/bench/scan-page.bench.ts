import { expect } from "@playwright/test";

import { dropFixture, signUp, test } from "../tests/kit";

// Speed of the results page (bench/scan-page.sh): the server's render of a processed scan's
// page with all its regions, and the browser's redraw of the centile chart when another
// region is picked. Medians are printed; nothing here is a pass/fail threshold.

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

test("results page speed", async ({ page }) => {
  const runs = Number(process.env.NEUROVOL_BENCH_RUNS ?? 20);
  await signUp(page, `bench-${Date.now()}@example.org`);
  await page.goto("/upload");
  await page.waitForFunction(() => (window as any).__neurovol_hydrated === true);
  await dropFixture(page, "t1_mprage_sag_phi.zip");
  await page.getByTestId("deidentify").click();
  await expect(page.getByTestId("removal-report")).toBeVisible({ timeout: 120_000 });
  await page.getByTestId("confirm-upload").click();
  await expect(page).toHaveURL(/\/scans\/[0-9a-f]{32}$/, { timeout: 120_000 });
  await expect
    .poll(async () => (await page.reload(), page.getByTestId("scan-status").getAttribute("data-status")), {
      timeout: 840_000,
      intervals: [5_000],
    })
    .toBe("done");

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
  console.log(`server render of the scan page (${rows} regions): median ${median(render).toFixed(1)} ms over ${render.length}`);
  console.log(`chart redraw in the browser: median ${median(switches).toFixed(1)} ms over ${switches.length} region switches`);
});
