//! `gatehouse`: the Gatehouse binary.
//!
//! * `gatehouse serve` — data plane + admin API (see [`serve`]).
//! * `gatehouse check-config FILE` — validates a config file, reporting every error at once.
//! * `gatehouse migrate` — applies database migrations and exits.
//! * `gatehouse keys|providers|models|logs|audit|limits|oauth-clients|tokens …` — a client of the admin API (see [`cli`]), reading
//!   `GATEHOUSE_ADMIN_URL` (default `http://127.0.0.1:8081`) and `GATEHOUSE_ADMIN_TOKEN`.
//!
//! Exit codes: 0 success, 1 failure (bad config, unreachable store, admin API error), 2 usage
//! errors (clap).

mod cli;
mod dpop_settings;
mod metrics_http;
mod serve;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gatehouse: an AI gateway that keeps provider keys safe.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (data plane) and the admin API.
    Serve(serve::ServeArgs),
    /// Validate a configuration file; prints "ok" or every error with its key path.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Apply database migrations and exit.
    Migrate(serve::StoreArgs),
    /// API keys: create, list, rotate, revoke.
    Keys(cli::ClientArgs<cli::KeysCmd>),
    /// Upstream providers: add (or update), list, remove.
    Providers(cli::ClientArgs<cli::ProvidersCmd>),
    /// Public models: add (or replace), list, remove.
    Models(cli::ClientArgs<cli::ModelsCmd>),
    /// Call log, newest first.
    Logs(cli::LogsArgs),
    /// Audit log of credential events (newest first); `audit verify` checks the hash chain.
    Audit(cli::audit::AuditArgs),
    /// Rate limits, token quotas and spend budgets: set, list (with usage), remove.
    Limits(cli::ClientArgs<cli::limits::LimitsCmd>),
    /// Teams and their members (issue 7).
    Teams(cli::ClientArgs<cli::tenancy::TeamsCmd>),
    /// Users: create, list, set-role, set-password, me (issue 7).
    Users(cli::ClientArgs<cli::tenancy::UsersCmd>),
    /// Apps of a team: create, list (issue 7).
    Apps(cli::ClientArgs<cli::tenancy::AppsCmd>),
    /// Log in with a password and print a new operator token for the CLI (shown once).
    Login(cli::tenancy::LoginArgs),
    /// A team's configuration as a TOML file: export, apply (plan first, idempotent).
    Config(cli::config_io::ConfigArgs),
    /// OAuth clients of the token endpoint: create (secret shown once), list, revoke.
    OauthClients(cli::ClientArgs<cli::oauth::OAuthClientsCmd>),
    /// Revoke or introspect any API key or issued token (read from stdin, never echoed).
    Tokens(cli::ClientArgs<cli::oauth::TokensCmd>),
    /// Services (issue 7): create, publish, deprecate, retire, rollback, releases, diff.
    Services(cli::ClientArgs<cli::apim::ServicesCmd>),
    /// Subscriptions of apps to services: request, approve, reject, cancel, list.
    Subscriptions(cli::ClientArgs<cli::apim::SubscriptionsCmd>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !matches!(cli.command, Command::Serve(_)) {
        quiet_on_broken_pipe();
    }
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::serve(args).await,
            Command::CheckConfig { file } => serve::check_config(&file),
            Command::Migrate(args) => serve::migrate(args).await,
            Command::Keys(args) => cli::keys(args).await,
            Command::Providers(args) => cli::providers(args).await,
            Command::Models(args) => cli::models(args).await,
            Command::Logs(args) => cli::logs(args).await,
            Command::Audit(args) => cli::audit::audit(args).await,
            Command::Limits(args) => cli::limits::limits(args).await,
            Command::Teams(args) => cli::tenancy::teams(args).await,
            Command::Users(args) => cli::tenancy::users(args).await,
            Command::Apps(args) => cli::tenancy::apps(args).await,
            Command::Login(args) => cli::tenancy::login(args).await,
            Command::Config(args) => cli::config_io::config(args).await,
            Command::OauthClients(args) => cli::oauth::oauth_clients(args).await,
            Command::Tokens(args) => cli::oauth::tokens(args).await,
            Command::Services(args) => cli::apim::services(args).await,
            Command::Subscriptions(args) => cli::apim::subscriptions(args).await,
        }
    })
}

/// For the CLI commands: a reader that went away (`gatehouse audit | head -1`) ends the process
/// quietly with status 0, as `head`'s other producers do, instead of a panic message (L5).
///
/// Rust ignores SIGPIPE, so `println!` on a closed pipe panics with "failed printing to stdout:
/// Broken pipe"; restoring SIGPIPE's default would need `unsafe` (forbidden here) and must not
/// happen in `serve` anyway (a client closing its socket would kill the server). This hook
/// recognises exactly that panic and exits; every other panic keeps the default report.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or("");
        if msg.starts_with("failed printing to stdout") && (msg.contains("Broken pipe") || msg.contains("os error 32")) {
            std::process::exit(0);
        }
        default(info);
    }));
}
