//! The scan page's slice viewer: the element, its canvas and its controls. `/viewer.js`
//! (built from `viewer/viewer.js`, loaded by every page's head; it imports NiiVue when a
//! viewer appears) brings it to life in the browser; without
//! JavaScript the page points to the report's three pictures instead.

use leptos::prelude::*;

/// NiiVue's layouts, by the name of its slice-type property (read by `viewer.js`).
const LAYOUTS: [(&str, &str); 5] = [
    ("sliceTypeMultiplanar", "All views"),
    ("sliceTypeAxial", "Axial"),
    ("sliceTypeCoronal", "Coronal"),
    ("sliceTypeSagittal", "Sagittal"),
    ("sliceTypeRender", "3D"),
];

pub fn slice_viewer(scan_id: String) -> impl IntoView {
    let report = format!("/scans/{scan_id}/report");
    view! {
        <section class="viewer-section" aria-labelledby="viewer-title">
            <h2 id="viewer-title">"Slices"</h2>
            <neurovol-viewer data-scan=scan_id data-testid="viewer">
                <div class="viewer-controls">
                    <fieldset class="inline">
                        <legend>"View"</legend>
                        {LAYOUTS.into_iter().enumerate().map(|(i, (value, text))| view! {
                            <label>
                                <input type="radio" name="viewer-layout" value=value data-viewer="layout" checked=i == 0/>
                                {text}
                            </label>
                        }).collect_view()}
                    </fieldset>
                    <label>
                        "Region colours "
                        <input type="range" min="0" max="100" value="60" data-viewer="opacity" data-testid="viewer-opacity"/>
                    </label>
                    <label>
                        <input type="checkbox" data-viewer="outline" data-testid="viewer-outline"/>
                        " Outline the regions"
                    </label>
                </div>
                // NiiVue sizes the canvas to its parent: a box of its own, not the controls'
                <div class="viewer-frame">
                    <canvas data-testid="viewer-canvas" tabindex="0"
                        aria-label="The de-identified volume with the regions in colour: axial, coronal and sagittal slices and a 3D view. Arrow keys move the slices.">
                    </canvas>
                </div>
                <p class="viewer-readout" data-viewer="readout" data-testid="viewer-readout" aria-live="polite"></p>
            </neurovol-viewer>
            // hidden by viewer.js as it starts: what a page without JavaScript says instead
            <p class="muted" data-viewer-fallback="">
                "The slice viewer needs JavaScript. The " <a href=report>"printable report"</a> " shows three slices with the regions in colour."
            </p>
            <p class="muted small">"Viewer: NiiVue (BSD-2-Clause; " <a href="/pkg/niivue.licences.txt">"notices"</a> "). Colours: the model's colour table."</p>
        </section>
    }
}
