-- The band around each percentile: the percentiles one SD of uncertainty (our method's
-- and the site effect's) below and above it. Null where there is no percentile, and for
-- scans scored before bands existed.
ALTER TABLE scan_regions ADD COLUMN percentile_low DOUBLE PRECISION;
ALTER TABLE scan_regions ADD COLUMN percentile_high DOUBLE PRECISION;
