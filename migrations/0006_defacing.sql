-- Defacing (issue 22): the DICOM archive is deleted as soon as the defaced volume is
-- stored (its images show the face), so the per-scan and per-account choice to keep it
-- after processing is gone.
ALTER TABLE scans DROP COLUMN discard_archive;
ALTER TABLE users DROP COLUMN discard_archive_default;
