//! The facts the Privacy page shows, derived from the running configuration.

use app::PrivacyFacts;

use crate::config::Config;

pub fn facts(config: &Config) -> PrivacyFacts {
    let design = deid::removed_keywords(deid::Profile::Seed);
    let profile_extra: Vec<&str> = deid::removed_keywords(deid::Profile::Basic)
        .into_iter()
        .filter(|k| !design.contains(k))
        .collect();
    let database = if config.uses_postgres() {
        "a PostgreSQL database run by this service's operator".to_string()
    } else {
        "an SQLite database file on this server, inside its data directory".to_string()
    };
    PrivacyFacts {
        // Straight from the de-identification crate's tables: the page cannot drift from them.
        removed_attributes: design.iter().map(|s| s.to_string()).collect(),
        removed_also: vec![
            format!(
                "{} further attributes of the DICOM PS3.15 Basic Confidentiality Profile: {}.",
                profile_extra.len(),
                profile_extra.join(", ")
            ),
            "Every private (vendor) element, including private sequences and elements of unknown type.".into(),
            "Every overlay (groups 6000–60FF), which can hold burnt-in names.".into(),
            "Every study, series, instance and frame-of-reference UID is replaced with a new random one.".into(),
            "File and folder names from your ZIP; files are renamed by position.".into(),
        ],
        kept_facts: vec![
            "Your age in years at the scan (computed from the birth date before the birth date is removed, when no age is recorded).".into(),
            "Your sex as one letter (M, F, O) or unknown.".into(),
            "The study date.".into(),
            "The scanner's manufacturer, model and field strength (they stay in the de-identified files too), to warn you when two of your scans come from different scanners.".into(),
            "Your email address and a bcrypt hash of your password, for signing in.".into(),
            google_fact(config),
            "An audit log of your account: sign-ins (and refused attempts), uploads, downloads, exports, deletions and retries, each with its time, IP address and browser (user agent). Only you see it, on your account page.".into(),
        ],
        database,
        object_store: match (&config.s3_endpoint, &config.s3_bucket) {
            (Some(endpoint), Some(bucket)) => format!(
                "a private S3-compatible bucket ({bucket} at {}), reached by the segmentation service only through signed links valid for at most 15 minutes",
                endpoint.split("://").nth(1).unwrap_or(endpoint).split('/').next().unwrap_or_default()
            ),
            _ => format!(
                "a private folder on this server ({}), reached by the segmentation service only through signed links valid for at most 15 minutes",
                config.data_dir.join("objects").display()
            ),
        },
        segmentation: match &config.runpod_endpoint_id {
            Some(_) if config.runpod_api_key.is_some() => "on a GPU in a RunPod serverless endpoint, which receives only the de-identified 3D volume with the face removed, through a signed link, keeps nothing after the job, and never sees your age, sex or account".into(),
            _ => "on this server's own processor, by NeuroVol's segmentation worker on the loopback interface".into(),
        },
        session_days: config.session_days,
        retention: vec![
            "The raw upload is never stored: only the de-identified files are.".into(),
            "The face is removed from the 3D volume right after conversion, before it is stored or sent to the segmentation service: everything in front of and below a plane under the brain (face, jaw, neck), and everything more than 2 cm from the brain at the sides (the outer ears), is set to zero. The scan page shows the middle slice of what is kept.".into(),
            "Kept for each scan: the de-identified 3D volume with the face removed (NIfTI), its region labels, the region volumes and percentiles. The de-identified DICOM files are deleted as soon as they are converted, because their images show the face.".into(),
            "Everything is kept until you delete it: a scan, or your whole account, on the account page.".into(),
            "Temporary files are deleted as soon as a step finishes or fails.".into(),
            "Signed-out and expired sessions are deleted.".into(),
        ],
        controls: vec![
            "Download any file of a scan from its page, or everything we hold about you as one ZIP from your account page: your scans' files and results, your account's facts, your audit log, a manifest with the SHA-256 of every file, and a README saying what each file is, why we hold it, where and for how long.".into(),
            "Delete a scan, or your whole account, yourself after entering your password again (an account that signs in with Google only confirms by signing in with Google again). The database rows are deleted at once, in one step, together with a list of the stored files to remove; those are removed from storage within minutes, or about 20 minutes for a scan still being processed (retried until the storage answers, across restarts), and a receipt with counts and dates shows \"deletion pending\" until they are gone.".into(),
            format!(
                "Deleting your account signs out all its sessions and deletes its audit log; what remains is the receipt, which names no account and holds no health data. {}",
                if config.uses_postgres() {
                    "PostgreSQL frees the space of deleted rows in its routine maintenance (vacuum)."
                } else {
                    "Deleted database rows are overwritten in the database file, not left behind."
                }
            ),
            "See every sign-in, upload, download, export, deletion and retry of your account, with its time, IP address and browser, on your account page. Changing your password there signs out every other session.".into(),
        ],
        logging: "Logs record request ids, routes, status codes, timings and your random account id — never your email, file contents, DICOM values or file names.".into(),
    }
}

/// What Google sign-in keeps, when the instance offers it.
fn google_fact(config: &Config) -> String {
    if config.google_client_id.is_some() {
        "If you sign in with Google: Google's identifier for your Google account and the email address Google verified — never a Google password or token. A refused Google sign-in that belongs to no account is recorded without one: its time, the check that failed, the IP address and the browser — nothing from Google's answer — for 30 days.".into()
    } else {
        "No sign-in through another service: this instance does not offer Google sign-in.".into()
    }
}
