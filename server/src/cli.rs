//! The `keyward` command line.

use crate::config::Settings;
use crate::vault::master_key::{self, MasterKey, MasterKeySource};
use crate::vault::{self, Vault};
use crate::{db, startup, telemetry};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    about = "Keyward: bring-your-own-key gateway for LLM providers"
)]
pub struct Cli {
    /// TOML configuration file (default: ./keyward.toml if present). Env: KEYWARD_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate the database, then serve the web UI and APIs until SIGINT/SIGTERM.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Write a new random master key (base64, mode 0600) to FILE. Prints the path, not the key.
    GenMasterKey {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Inspect and maintain the key vault.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Manage accounts from the command line.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Change a provider's settings (as the platform admin does under Providers); audited.
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// Serve the in-repo mock LLM provider (both wire formats, failures chosen by the key) for
    /// tests, demos and benchmarks. No database, no master key.
    MockProvider {
        #[arg(long, default_value = "127.0.0.1:9100")]
        bind: std::net::SocketAddr,
        /// Accept only these keys (comma-separated); by default any key is accepted.
        #[arg(long, value_delimiter = ',')]
        keys: Option<Vec<String>>,
        /// Delay before the first byte of every answer, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Pace of streamed tokens (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        tokens_per_sec: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Override a provider's base URL and/or default model, or switch BYOK.
    Set {
        /// Provider id: openai, anthropic, groq, deepseek, gemini, mistral, together, openrouter, nvidia.
        provider: String,
        /// New base URL ("" for the catalogue default).
        #[arg(long)]
        base_url: Option<String>,
        /// New default model ("" for the catalogue default).
        #[arg(long)]
        default_model: Option<String>,
        /// Allow workspaces to bring their own keys for this provider.
        #[arg(long)]
        byok: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a platform admin. The password comes from --password-file or a terminal prompt,
    /// never from the command line.
    Create {
        #[arg(long)]
        email: String,
        /// Display name (default: the part of the email before the @).
        #[arg(long)]
        name: Option<String>,
        /// A file whose first line is the password.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Show the keyring: data keys, their status and how many credentials each protects.
    Status,
    /// Create a new data key and make it the active one (old keys stay decrypt-only).
    Rotate,
    /// Re-encrypt credentials still on older data keys with the active one (resumable).
    Rewrap {
        /// Credentials per transaction.
        #[arg(long, default_value_t = 100)]
        batch: u64,
        /// Stop after this many batches (run again to continue).
        #[arg(long)]
        max_batches: Option<u64>,
    },
    /// Erase data keys older than the active one (refused while credentials still use them).
    Retire,
    /// Re-wrap the keyring under a new master key, in one transaction.
    Rekey {
        /// The master key file in use now.
        #[arg(long, value_name = "FILE")]
        old_key_file: PathBuf,
        /// The new master key file (create it with gen-master-key).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("mock provider: {0}")]
    Mock(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Startup(#[from] startup::StartupError),
    #[error(transparent)]
    Db(#[from] db::DbSetupError),
    #[error("master key: {0}")]
    MasterKey(#[from] master_key::MasterKeyError),
    #[error(transparent)]
    Vault(#[from] vault::VaultError),
    #[error("{0}")]
    Account(#[from] crate::error::ServiceError),
    #[error("admin create: {0}")]
    Password(String),
}

/// The new admin's password: first line of a file, or typed twice at a terminal.
fn read_password(file: Option<&Path>) -> Result<Zeroizing<String>, CliError> {
    use std::io::IsTerminal;
    if let Some(path) = file {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            CliError::Password(format!("cannot read {}: {}", path.display(), e.kind()))
        })?);
        return Ok(Zeroizing::new(
            text.lines().next().unwrap_or("").to_string(),
        ));
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Password(
            "no terminal to ask for the password; use --password-file FILE".into(),
        ));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("Password: ").map_err(|e| CliError::Password(e.to_string()))?,
    );
    let second = Zeroizing::new(
        rpassword::prompt_password("Password again: ")
            .map_err(|e| CliError::Password(e.to_string()))?,
    );
    if *first != *second {
        return Err(CliError::Password("the passwords differ".into()));
    }
    Ok(first)
}

fn load_master(settings: &Settings, env_value: Option<&str>) -> Result<MasterKey, CliError> {
    Ok(master_key::load(&MasterKeySource {
        file: settings.master_key_file.as_deref(),
        env_value,
        allow_insecure_permissions: settings.allow_insecure_master_key_file,
    })?)
}

fn load_master_file(path: &Path, settings: &Settings) -> Result<MasterKey, CliError> {
    Ok(master_key::load(&MasterKeySource {
        file: Some(path),
        env_value: None,
        allow_insecure_permissions: settings.allow_insecure_master_key_file,
    })?)
}

/// Runs a command. `env_master_key` is `KEYWARD_MASTER_KEY`, already taken out of the process
/// environment by `main` before any thread started.
pub async fn run(cli: Cli, env_master_key: Option<Zeroizing<String>>) -> Result<(), CliError> {
    let env_master = env_master_key.as_deref().map(String::as_str);
    match cli.command {
        Command::MockProvider {
            bind,
            keys,
            latency_ms,
            tokens_per_sec,
        } => {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|e| CliError::Mock(format!("cannot listen on {bind}: {e}")))?;
            println!(
                "mock provider listening on http://{}",
                listener
                    .local_addr()
                    .map_err(|e| CliError::Mock(e.to_string()))?
            );
            let config = crate::mock_provider::MockConfig {
                keys,
                latency: std::time::Duration::from_millis(latency_ms),
                tokens_per_sec,
            };
            crate::mock_provider::serve_with(listener, config)
                .await
                .map_err(|e| CliError::Mock(e.to_string()))
        }
        Command::GenMasterKey { out } => {
            master_key::generate_file(&out)?;
            println!("wrote a new master key to {}", out.display());
            println!("keep it secret and back it up: without it the vault cannot be opened");
            Ok(())
        }
        Command::Migrate => {
            let settings = Settings::load(cli.config.as_deref())?;
            telemetry::init(settings.log_format, &settings.log_filter);
            let conn = db::connect(&settings).await?;
            db::migrate(&conn).await?;
            tracing::info!(database = %settings.database_url, "migrations applied");
            close(conn).await;
            Ok(())
        }
        Command::Serve => {
            let settings = Settings::load(cli.config.as_deref())?;
            telemetry::init(settings.log_format, &settings.log_filter);
            let master = load_master(&settings, env_master)?;
            let listener = startup::bind(&settings).await?;
            let refresh = std::time::Duration::from_secs(settings.vault_refresh_secs);
            let state = startup::build_state(settings, &master).await?;
            drop(master);
            let refresher = state.vault.spawn_refresher(refresh);
            let conn = state.db.clone();
            let address = listener
                .local_addr()
                .map_or_else(|_| state.settings.bind.to_string(), |a| a.to_string());
            tracing::info!(
                address = %address,
                database = %state.settings.database_url,
                "keyward is serving on http://{address}"
            );
            // A fresh instance: the one-time set-up link, printed (never logged) for whoever
            // started the server. Only its hash is stored.
            if let Some(token) = crate::services::accounts::new_setup_token(&conn).await? {
                let base = state
                    .settings
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{address}"));
                println!("{}", setup_banner(base.trim_end_matches('/'), &token));
            }
            let served = startup::run(listener, state, startup::shutdown_signal()).await;
            refresher.abort();
            close(conn).await;
            served?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Provider(ProviderCommand::Set {
            provider,
            base_url,
            default_model,
            byok,
        }) => {
            let settings = Settings::load(cli.config.as_deref())?;
            telemetry::init(settings.log_format, &settings.log_filter);
            let conn = db::connect(&settings).await?;
            db::migrate(&conn).await?;
            let current = crate::services::catalogue::providers(&conn)
                .await?
                .into_iter()
                .find(|p| p.id == provider)
                .ok_or_else(|| {
                    CliError::Account(crate::error::ServiceError::Invalid(format!(
                        "unknown provider {provider:?}"
                    )))
                })?;
            let keep = |new: Option<String>, old: Option<String>| match new {
                Some(v) => v,
                None if current.overridden => old.unwrap_or_default(),
                None => String::new(),
            };
            let change = crate::services::catalogue::ProviderChange {
                base_url: keep(base_url, current.base_url.clone()),
                default_model: keep(default_model, current.default_model.clone()),
                byok_enabled: byok.unwrap_or(current.byok_enabled),
            };
            let gateway = crate::gateway::Gateway::from_settings(&settings)
                .map_err(|e| CliError::Mock(e.to_string()))?;
            let by = crate::services::audit::By::cli();
            // This process caches nothing; running servers re-read the catalogue within
            // their snapshots' maximum age.
            let changes = crate::invalidation::Invalidation::new();
            let result = crate::services::catalogue::update_provider(
                &conn, &changes, &gateway, &by, &provider, change,
            )
            .await;
            close(conn).await;
            result?;
            println!("updated {provider}");
            Ok(())
        }
        Command::Admin(AdminCommand::Create {
            email,
            name,
            password_file,
        }) => {
            let settings = Settings::load(cli.config.as_deref())?;
            telemetry::init(settings.log_format, &settings.log_filter);
            let password = read_password(password_file.as_deref())?;
            let conn = db::connect(&settings).await?;
            db::migrate(&conn).await?;
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or("").to_string());
            let user =
                crate::services::accounts::create_platform_admin(&conn, &email, &name, &password)
                    .await?;
            println!("created platform admin {}", user.email);
            close(conn).await;
            Ok(())
        }
        Command::Vault(command) => {
            let settings = Settings::load(cli.config.as_deref())?;
            telemetry::init(settings.log_format, &settings.log_filter);
            let conn = db::connect(&settings).await?;
            if let VaultCommand::Rekey {
                old_key_file,
                new_key_file,
            } = &command
            {
                let old = load_master_file(old_key_file, &settings)?;
                let new = load_master_file(new_key_file, &settings)?;
                let n = vault::rekey(&conn, &old, &new).await?;
                audit_vault(&conn, "vault.rekeyed", format!("{n} data keys re-wrapped")).await;
                close(conn).await;
                println!("re-wrapped {n} data keys under the new master key");
                println!(
                    "now point KEYWARD_MASTER_KEY_FILE at {} and restart every instance",
                    new_key_file.display()
                );
                return Ok(());
            }
            let master = load_master(&settings, env_master)?;
            vault::preflight(&conn, &master).await?;
            db::migrate(&conn).await?;
            let vault = Vault::open(conn.clone(), &master).await?;
            drop(master);
            let result = run_vault(&vault, command).await;
            if let Ok(Some((action, detail))) = &result {
                audit_vault(&conn, action, detail.clone()).await;
            }
            close(conn).await;
            result.map(|_| ())
        }
    }
}

/// Records a vault operation in the (instance-wide) audit log. A failure to record is reported
/// but does not undo the operation, which has already committed.
async fn audit_vault(conn: &sea_orm::DatabaseConnection, action: &str, detail: String) {
    use crate::services::audit;
    let event = audit::Event {
        action,
        detail: Some(detail),
        ..Default::default()
    };
    if let Err(e) = audit::record(conn, &audit::By::cli(), event).await {
        eprintln!("warning: could not write the audit log entry: {e}");
    }
}

/// Closes the pool so that SQLite checkpoints its write-ahead log and leaves one clean file.
async fn close(conn: sea_orm::DatabaseConnection) {
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the database");
    }
}

/// Runs a vault command; returns the audit event (action, detail) for the changes it made.
async fn run_vault(
    vault: &Vault,
    command: VaultCommand,
) -> Result<Option<(&'static str, String)>, CliError> {
    let event = match command {
        VaultCommand::Status => {
            let s = vault.status().await?;
            println!(
                "generation {} · active data key {} · minimum key id {} · {} credentials",
                s.generation,
                s.active_key_id.map_or("none".into(), |k| k.to_string()),
                s.min_key_id,
                s.credentials_total
            );
            println!(
                "{:>6}  {:<13} {:>11}  created",
                "key", "status", "credentials"
            );
            for k in s.keys {
                println!(
                    "{:>6}  {:<13} {:>11}  {}",
                    k.id,
                    k.status.as_str(),
                    k.credentials,
                    k.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
            None
        }
        VaultCommand::Rotate => {
            let id = vault.rotate().await?;
            println!(
                "data key {id} is now active; run `keyward vault rewrap` to move old credentials to it"
            );
            Some(("vault.rotated", format!("data key {id} active")))
        }
        VaultCommand::Rewrap { batch, max_batches } => {
            let r = vault.rewrap(batch, max_batches).await?;
            println!(
                "re-encrypted {} credentials; {} remain on older keys; {} could not be decrypted",
                r.rewrapped,
                r.remaining,
                r.failed.len()
            );
            for id in &r.failed {
                println!("  cannot decrypt credential {id} (tampered?)");
            }
            (r.rewrapped > 0 || !r.failed.is_empty()).then(|| {
                (
                    "vault.rewrapped",
                    format!(
                        "{} re-encrypted, {} remaining, {} failed",
                        r.rewrapped,
                        r.remaining,
                        r.failed.len()
                    ),
                )
            })
        }
        VaultCommand::Retire => {
            let retired = vault.retire().await?;
            if retired.is_empty() {
                println!("nothing to retire");
                None
            } else {
                println!("retired data keys {retired:?}; their wrapped material is erased");
                Some(("vault.retired", format!("data keys {retired:?} retired")))
            }
        }
        VaultCommand::Rekey { .. } => unreachable!("handled before the vault is opened"),
    };
    Ok(event)
}

/// The first-run message with the set-up link.
fn setup_banner(base: &str, token: &str) -> String {
    format!(
        "\n\
         ************************************************************************\n\
         * First run: open this link to create the first account (the platform  *\n\
         * admin). It works once; restarting the server prints a new one.       *\n\
         ************************************************************************\n\
         \n    {base}/setup?token={token}\n"
    )
}
