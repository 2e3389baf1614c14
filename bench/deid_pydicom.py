#!/usr/bin/env python3
"""pydicom baseline for the deid benchmark: the same removals as crates/deid's Basic profile.

Removes DESIGN.md's 32 attributes + the PS3.15 Basic extras (both read from
crates/deid/src/rules.rs so the lists stay in sync), every private element, 60xx overlays,
50xx curves, group lengths, at every depth; replaces every non-registry UID with 2.25.<uuid4>
(consistent map); zeroes the preamble; rebuilds MediaStorageSOPInstanceUID.

  deid_pydicom.py [--runs N] [FIXTURE.zip]

Prints JSON lines like the Rust bench: measure `files` (inflated files -> de-identified
bytes) and `zip_stored` (ZIP -> ZIP, stored output), medians over N runs.
"""
import argparse
import io
import json
import os
import re
import statistics
import sys
import time
import uuid
import zipfile

import pydicom
from pydicom.tag import Tag

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = os.path.join(HERE, "..", "crates", "deid", "src", "rules.rs")
KEEP_UID = {0x00020002, 0x00020010, 0x00020012, 0x00041510, 0x00041512, 0x00080016, 0x0008001A,
            0x0008001B, 0x0008010C, 0x00080117, 0x00080118, 0x00081150, 0x00089123}


def removal_tags():
    src = open(RULES).read()
    tags = set()
    for g, e in re.findall(r"\(0x([0-9A-Fa-f]{4}), 0x([0-9A-Fa-f]{4}), \"[A-Za-z]+\"\)", src):
        tags.add((int(g, 16) << 16) | int(e, 16))
    return tags


REMOVE = removal_tags()


def clean(ds, uids):
    for elem in list(ds):
        t = int(elem.tag)
        g, e = t >> 16, t & 0xFFFF
        if g % 2 == 1 or 0x6000 <= g <= 0x60FF or 0x5000 <= g <= 0x50FF or e == 0 or t in REMOVE:
            del ds[elem.tag]
            continue
        if elem.VR == "SQ":
            for item in elem.value:
                clean(item, uids)
        elif elem.VR == "UI" and t not in KEEP_UID and elem.value:
            vals = elem.value if isinstance(elem.value, pydicom.multival.MultiValue) else [elem.value]
            new = []
            for u in vals:
                u = str(u)
                if u.startswith("1.2.840.10008."):
                    new.append(u)
                else:
                    if u not in uids:
                        uids[u] = "2.25.%d" % uuid.uuid4().int
                    new.append(uids[u])
            elem.value = new if len(new) > 1 else new[0]


def deid_bytes(raw, uids):
    ds = pydicom.dcmread(io.BytesIO(raw))
    clean(ds, uids)
    ds.preamble = b"\0" * 128
    sop = str(ds.file_meta.MediaStorageSOPInstanceUID)
    if sop not in uids:
        uids[sop] = "2.25.%d" % uuid.uuid4().int
    ds.file_meta.MediaStorageSOPInstanceUID = uids[sop]
    for t in list(ds.file_meta.keys()):
        if int(t) in (0x00020016, 0x00020100, 0x00020102):
            del ds.file_meta[t]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def is_junk(name):
    base = name.rsplit("/", 1)[-1]
    return "__MACOSX" in name or base in (".DS_Store", "DICOMDIR") or base.startswith("._") or name.endswith("/")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("zip", nargs="?", default=os.path.join(
        os.environ.get("NEUROVOL_ASSETS", os.path.join(HERE, "..", "..", "shared")), "fixtures", "t1_mprage_sag_phi.zip"))
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    zbytes = open(a.zip, "rb").read()
    with zipfile.ZipFile(io.BytesIO(zbytes)) as z:
        files = [z.read(i) for i in z.infolist() if not is_junk(i.filename)]
    files = [f for f in files if len(f) > 132 and f[128:132] == b"DICM"]
    nbytes = sum(len(f) for f in files)
    mb, n = nbytes / 1e6, len(files)

    t_files = []
    for _ in range(a.runs):
        uids = {}
        t = time.perf_counter()
        for f in files:
            deid_bytes(f, uids)
        t_files.append(time.perf_counter() - t)

    t_zip = []
    for _ in range(a.runs):
        uids = {}
        t = time.perf_counter()
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(zbytes)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
            k = 0
            for info in zin.infolist():
                if is_junk(info.filename):
                    continue
                raw = zin.read(info)
                if len(raw) <= 132 or raw[128:132] != b"DICM":
                    continue
                k += 1
                zout.writestr("IM%05d.dcm" % k, deid_bytes(raw, uids))
        t_zip.append(time.perf_counter() - t)

    for what, s in (("files", statistics.median(t_files)), ("zip_stored", statistics.median(t_zip))):
        print(json.dumps({"impl": "pydicom-%s" % pydicom.__version__, "measure": what, "files": n,
                          "mb": round(mb, 2), "median_s": round(s, 4), "files_per_s": round(n / s),
                          "mb_per_s": round(mb / s, 1), "runs": a.runs}))


if __name__ == "__main__":
    sys.exit(main())
