//! The NeuroVol server as a library: the web app (`serve`), the processing pipeline and
//! the command-line tools. `main.rs` only parses the command line; integration tests and
//! benches use these modules directly.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod convert;
pub mod db;
pub mod deletion;
pub mod export;
pub mod object_store;
pub mod oidc;
pub mod pipeline;
pub mod scan_regions;
pub mod scans;
pub mod segmenter;
pub mod storage;
pub mod temp_dir;
pub mod web;

use std::sync::Arc;

use crate::config::Config;

/// `neurovol serve`: checks what the pipeline needs, migrates the database, starts the
/// job runners and serves until stopped.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // before the database: a server that cannot process scans must not create one
    pipeline::preflight(&config)?;
    let db = db::connect(&config).await?;
    db::migrate(&db).await?;
    auth::warm_up().await;
    let config = Arc::new(config);
    tracing::info!(
        database = if config.uses_postgres() { "postgres" } else { "sqlite" },
        data_dir = %config.data_dir.display(),
        site_root = %config.site_root.display(),
        "starting"
    );
    // Hourly clean-up of expired sessions and throttle counters.
    {
        let (db, config) = (db.clone(), config.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                if let Err(e) = auth::purge_expired(&db, &config).await {
                    tracing::warn!(error = %e, "session clean-up failed");
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    // where the worker fetches the local store's signed URLs (the bound port if it was 0)
    let object_url_base = config.object_url_base.clone().unwrap_or_else(|| {
        if config.public_url.ends_with(":0") {
            bound_url(&listener)
        } else {
            config.public_url.clone()
        }
    });
    let store = pipeline::open_store(&config, &object_url_base).await?;
    let wake = Arc::new(tokio::sync::Notify::new());
    pipeline::start(&config, db.clone(), store.clone(), wake.clone())?;
    // every serving process removes deleted objects, pipeline or not
    let deletions = Arc::new(tokio::sync::Notify::new());
    deletion::Deleter::new(
        db.clone(),
        config.uses_postgres(),
        store.clone(),
        deletion::Settings::from_config(&config),
        deletions.clone(),
    )
    .spawn();
    let csrf =
        web::csrf::CsrfKey::from_config(&config).map_err(|e| anyhow::anyhow!("cannot load the server secret: {e}"))?;
    // Google sign-in when configured; its redirect URL is on the bound port when the public
    // URL names port 0 (tests)
    let google = match config.google_settings()? {
        Some(mut settings) => {
            if config.public_url.ends_with(":0") {
                settings.redirect_url = format!("{}/auth/google/callback", bound_url(&listener));
            }
            Some(Arc::new(oidc::Provider::new(settings)?))
        }
        None => None,
    };
    let state = web::AppState {
        leptos: web::leptos_options(&config),
        privacy: Arc::new(web::privacy::facts(&config)),
        limits: Arc::new(web::rate_limit::RateLimits::from_config(&config)),
        db,
        config,
        store,
        wake,
        deletions,
        csrf,
        google,
    };
    web::serve(state, listener).await
}

/// `http://<the listener's address>`.
fn bound_url(listener: &tokio::net::TcpListener) -> String {
    format!(
        "http://{}",
        listener.local_addr().map(|a| a.to_string()).unwrap_or_default()
    )
}
