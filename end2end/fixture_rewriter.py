"""The test kit's fixture rewriter: a copy of a DICOM series ZIP as if scanned again later,
or on another scanner, for the longitudinal tests.

    python fixture_rewriter.py IN.zip OUT.zip --study-date YYYYMMDD [--age NNNY]
        [--scanner-model NAME] [--salt TEXT]

Every DICOM file's dates (study, series, acquisition, content) become the new date, its
PatientAge the given age, its ManufacturerModelName the given model; its study, series and
instance UIDs are replaced by new ones derived from the old and the salt (a new series, as a
rescan is). Pixel data is untouched. Other entries (DICOMDIR's references, macOS metadata)
are copied as they are. Needs pydicom >= 3 (scripts/py-venv.sh).
"""

import argparse
import io
import zipfile

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

DATES = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def rewrite(data: bytes, args) -> bytes | None:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        return None
    for keyword in DATES:
        if keyword in ds:
            setattr(ds, keyword, args.study_date)
    if args.age:
        ds.PatientAge = args.age
    if args.scanner_model:
        ds.ManufacturerModelName = args.scanner_model
    for keyword in UIDS:
        if keyword in ds:
            setattr(ds, keyword, generate_uid(entropy_srcs=[str(ds.get(keyword)), args.salt]))
    meta = ds.file_meta
    if "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--study-date", required=True, help="YYYYMMDD")
    p.add_argument("--age", help="PatientAge, e.g. 069Y")
    p.add_argument("--scanner-model", help="ManufacturerModelName")
    p.add_argument("--salt", default="rescan", help="makes the new UIDs differ between copies")
    args = p.parse_args()
    if len(args.study_date) != 8 or not args.study_date.isdigit():
        p.error("--study-date takes YYYYMMDD")
    rewritten = 0
    with zipfile.ZipFile(args.input) as zin, zipfile.ZipFile(args.output, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            new = None
            if not info.is_dir() and not info.filename.startswith("__MACOSX/"):
                new = rewrite(data, args)
            if new is not None:
                rewritten += 1
            zout.writestr(info.filename, new if new is not None else data)
    if rewritten == 0:
        raise SystemExit(f"{args.input}: no DICOM file to rewrite")
    print(f"rewrote {rewritten} DICOM files into {args.output}")


if __name__ == "__main__":
    main()
