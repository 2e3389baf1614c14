// The scan page's slice viewer: a <neurovol-viewer data-scan=ID> element (the page renders
// its canvas and controls) brought to life with NiiVue (BSD-2-Clause; notices in
// /pkg/niivue.licences.txt). NiiVue is imported only here, from the site itself:
// scripts/build.sh replaces "/pkg/niivue.js" below with the content-hashed bundle.
//
// The volumes come from GET /scans/{id}/viewer.json: short-lived same-origin URLs signed
// for this account, and the model's label colours (the same as the charts, the report and
// the downloaded colour table). The regions table is the source of names, volumes and
// percentiles: hovering or clicking the slices reads its row; clicking a row (or picking a
// region in the chart) centres the slices on that region.

const NIIVUE = "/pkg/niivue.js";

class NeurovolViewer extends HTMLElement {
  // NiiVue (3 MB) and the volumes load when the viewer comes near the screen, not with the
  // page: the page hydrates and the chart answers first.
  connectedCallback() {
    if (this.started || this.watching) return;
    const fallback = this.parentElement && this.parentElement.querySelector("[data-viewer-fallback]");
    if (fallback) fallback.hidden = true;
    this.dataset.state = "waiting";
    this.say("The slices load when you scroll to them.");
    this.watching = new IntersectionObserver(
      (entries) => {
        if (!entries.some((e) => e.isIntersecting) || this.started) return;
        this.started = true;
        this.watching.disconnect();
        this.start().catch((e) => this.fail(e));
      },
      { rootMargin: "200px" },
    );
    this.watching.observe(this);
  }

  disconnectedCallback() {
    this.watching?.disconnect();
    this.watching = null;
    document.removeEventListener("click", this.onPageClick);
    document.removeEventListener("change", this.onPageChange);
  }

  fail(e) {
    this.dataset.state = "failed";
    this.say("The slice viewer could not be opened. The report shows three slices.");
    console.error("viewer:", e && e.message ? e.message : e);
  }

  say(text) {
    const out = this.control("readout");
    if (out) out.textContent = text;
  }

  async start() {
    const opened = performance.now();
    this.dataset.state = "loading";
    this.say("Loading the slices…");
    const [nvModule, data] = await Promise.all([import(NIIVUE), this.fetchData()]);
    const { Niivue, SHOW_RENDER, cmapper } = nvModule;
    const canvas = this.querySelector("canvas");
    const nv = new Niivue({
      backColor: [0, 0, 0, 1],
      show3Dcrosshair: true,
      multiplanarShowRender: SHOW_RENDER.ALWAYS,
      dragAndDropEnabled: false,
      isColorbar: false,
      loadingText: "loading the slices...",
    });
    this.nv = nv;
    await nv.attachToCanvas(canvas);
    this.labels = labelIndex(data.colours);
    // everything the first drawing needs goes in with the volumes: each later change of
    // colours or layout uploads and draws them again
    await nv.loadVolumes([
      { url: data.volume, name: "volume.nii.gz" },
      {
        url: data.labels,
        name: "labels.nii.gz",
        opacity: this.opacity(),
        colormapLabel: cmapper.makeLabelLut(colormap(data.colours)),
      },
    ]);
    nv.onLocationChange = (loc) => this.showLocation(loc);
    this.dataset.volumes = String(nv.volumes.length);
    this.dataset.firstSlicesMs = String(Math.round(performance.now() - opened));
    this.dataset.state = "ready";
    this.wireControls();
    this.showLocation(null);
  }

  async fetchData() {
    const r = await fetch(`/scans/${encodeURIComponent(this.dataset.scan)}/viewer.json`, {
      credentials: "same-origin",
    });
    if (!r.ok) throw new Error(`viewer data: HTTP ${r.status}`);
    return r.json();
  }

  control(name) {
    return this.querySelector(`[data-viewer=${name}]`);
  }

  opacity() {
    const o = this.control("opacity");
    return o ? Number(o.value) / 100 : 0.6;
  }

  applyOutline() {
    const o = this.control("outline");
    // NiiVue's atlasOutline: the labels' borders drawn with this thickness (0: filled)
    this.nv.setAtlasOutline(o && o.checked ? 1 : 0);
  }

  wireControls() {
    const nv = this.nv;
    this.control("opacity")?.addEventListener("input", () => nv.setOpacity(1, this.opacity()));
    this.control("outline")?.addEventListener("change", () => this.applyOutline());
    nv.canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    nv.canvas.addEventListener("mouseleave", () => this.describe(this.crosshairValue ?? null));
    this.querySelectorAll("[data-viewer=layout]").forEach((input) =>
      input.addEventListener("change", () => {
        if (input.checked) nv.setSliceType(nv[input.value]);
      }),
    );
    // a region's row in the table, or the chart's choice of region, centres the slices on it
    this.onPageClick = (ev) => {
      const row = ev.target.closest && ev.target.closest("tr[data-testid=region-row]");
      if (!row || !this.centreOn(row.dataset.name)) return;
      // a chart link scrolls to the chart; any other click on a row brings the slices into view
      if (!ev.target.closest("a")) this.scrollIntoView({ block: "nearest", behavior: "smooth" });
    };
    // after the chart has redrawn: the chart answers the choice first
    this.onPageChange = (ev) => {
      if (!ev.target.matches || !ev.target.matches("[data-testid=chart-region]")) return;
      const name = ev.target.value;
      const later = window.requestIdleCallback || ((f) => setTimeout(f, 50));
      later(() => this.centreOn(name), { timeout: 500 });
    };
    document.addEventListener("click", this.onPageClick);
    document.addEventListener("change", this.onPageChange);
  }

  // Where to put the crosshair for each label, in world (mm) coordinates: the voxel of
  // the region nearest its centre of mass, preferring voxels whose whole 3×3×3
  // neighbourhood is the region (a curved region's centre may lie outside it, and a
  // crosshair on its edge would name its neighbour as soon as the pointer moves).
  centres() {
    if (this.centreOfLabel) return this.centreOfLabel;
    const vol = this.nv.volumes[1];
    const [nx, ny, nz] = [vol.hdr.dims[1], vol.hdr.dims[2], vol.hdr.dims[3]];
    const img = vol.img;
    const each = (visit) => {
      let i = 0;
      for (let z = 0; z < nz; z++)
        for (let y = 0; y < ny; y++)
          for (let x = 0; x < nx; x++, i++) if (img[i] !== 0) visit(img[i], x, y, z, i);
    };
    const sum = new Map();
    each((v, x, y, z) => {
      let s = sum.get(v);
      if (!s) sum.set(v, (s = [0, 0, 0, 0]));
      s[0] += x;
      s[1] += y;
      s[2] += z;
      s[3] += 1;
    });
    const interior = (v, x, y, z, i) => {
      if (x === 0 || y === 0 || z === 0 || x === nx - 1 || y === ny - 1 || z === nz - 1) return false;
      for (let dz = -1; dz <= 1; dz++)
        for (let dy = -1; dy <= 1; dy++)
          for (let dx = -1; dx <= 1; dx++) if (img[i + dx + nx * (dy + ny * dz)] !== v) return false;
      return true;
    };
    const nearest = new Map();
    each((v, x, y, z, i) => {
      const [sx, sy, sz, n] = sum.get(v);
      const d = (x - sx / n) ** 2 + (y - sy / n) ** 2 + (z - sz / n) ** 2;
      const best = nearest.get(v);
      // [x, y, z, distance, interior]; an interior voxel beats any edge voxel
      if (best && best[4] && d >= best[3]) return;
      const inside = interior(v, x, y, z, i);
      if (!best || (inside && !best[4]) || (inside === best[4] && d < best[3])) nearest.set(v, [x, y, z, d, inside]);
    });
    const a = vol.hdr.affine;
    this.centreOfLabel = new Map();
    for (const [v, [x, y, z]] of nearest) {
      this.centreOfLabel.set(v, [0, 1, 2].map((r) => a[r][0] * x + a[r][1] * y + a[r][2] * z + a[r][3]));
    }
    return this.centreOfLabel;
  }

  centreOn(name) {
    const value = this.labels.valueOf.get(name);
    const mm = value === undefined ? undefined : this.centres().get(value);
    if (!mm) return false;
    const nv = this.nv;
    nv.scene.crosshairPos = nv.mm2frac(mm);
    nv.drawScene();
    nv.createOnLocationChange();
    this.dataset.centred = name;
    return true;
  }

  // The crosshair moved (a click, the arrow keys, a region chosen): name what it is on.
  showLocation(loc) {
    if (!loc) {
      this.describe(null);
      return;
    }
    this.dataset.mm = loc.mm ? Array.from(loc.mm.slice(0, 3), (v) => v.toFixed(1)).join(",") : "";
    this.crosshairValue = Math.round(loc.values && loc.values[1] ? loc.values[1].value : 0);
    this.describe(this.crosshairValue);
  }

  // The label under the pointer, while it is over a slice.
  hover(ev) {
    const nv = this.nv;
    const r = nv.canvas.getBoundingClientRect();
    const dpr = nv.uiData.dpr || 1;
    const frac = nv.canvasPos2frac([(ev.clientX - r.left) * dpr, (ev.clientY - r.top) * dpr]);
    if (!frac || frac[0] < 0) {
      this.describe(this.crosshairValue ?? null);
      return;
    }
    // as NiiVue names the crosshair's voxel: through world coordinates
    const labels = nv.volumes[1];
    const [x, y, z] = labels.mm2vox(nv.frac2mm(frac, 0, true));
    const value = Math.round(labels.getValue(x, y, z));
    this.dataset.hovered = this.labels.nameOf.get(value) ?? "";
    this.describe(value);
  }

  // The region's name, volume and percentile, as its row in the regions table gives them.
  describe(value) {
    if (value === null) {
      this.say("Hover over or click the slices to name a region; click a region in the table to go to it.");
      return;
    }
    this.dataset.label = String(value);
    const name = this.labels.nameOf.get(value);
    if (!value || !name) {
      this.say("Outside the labelled regions.");
      return;
    }
    const row = document.querySelector(`tr[data-testid=region-row][data-name="${CSS.escape(name)}"]`);
    if (!row) {
      this.say(name);
      return;
    }
    const cell = (col) => row.querySelector(`td[data-col=${col}]`);
    const text = cell("region").textContent.trim();
    const volume = cell("volume").textContent.trim();
    const p = cell("percentile").dataset.value;
    this.say(`${text}: ${volume} mL, ${p ? `percentile ${p}` : "no percentile"}`);
  }
}

// NiiVue's label colour map from the colour table: background transparent.
function colormap(colours) {
  const labels = colours.labels;
  return {
    R: labels.map((l) => l.rgb[0]),
    G: labels.map((l) => l.rgb[1]),
    B: labels.map((l) => l.rgb[2]),
    A: labels.map((l) => (l.value === 0 ? 0 : 255)),
    I: labels.map((l) => l.value),
    labels: labels.map((l) => l.name),
  };
}

function labelIndex(colours) {
  const nameOf = new Map();
  const valueOf = new Map();
  for (const l of colours.labels) {
    nameOf.set(l.value, l.name);
    valueOf.set(l.name, l.value);
  }
  return { nameOf, valueOf };
}

if (!customElements.get("neurovol-viewer")) customElements.define("neurovol-viewer", NeurovolViewer);
