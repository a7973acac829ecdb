//! `gatehouse-mock`: the mock OpenAI/Anthropic upstream as a standalone process.
//!
//! ```text
//! gatehouse-mock [--listen 127.0.0.1:PORT] [--expected-key KEY] [--scenario OPTIONS]
//! ```
//!
//! Prints `listening on http://ADDR` as the first line of stdout once it accepts
//! connections, then serves until SIGINT/SIGTERM. `--expected-key` may also come from the
//! `GATEHOUSE_MOCK_EXPECTED_KEY` environment variable; `--scenario` takes the default options
//! of the scenario convention (see the `gatehouse-testkit` crate docs), e.g.
//! `chunks=20,delay_ms=5`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use gatehouse_testkit::{MockProvider, Scenario};

const USAGE: &str =
    "usage: gatehouse-mock [--listen 127.0.0.1:PORT] [--expected-key KEY] [--scenario OPTIONS]";

struct Args {
    listen: SocketAddr,
    expected_key: Option<String>,
    scenario: Scenario,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        expected_key: std::env::var("GATEHOUSE_MOCK_EXPECTED_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
        scenario: Scenario::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                let v = value("--listen")?;
                args.listen = v
                    .parse()
                    .map_err(|_| format!("--listen: `{v}` is not an IP:PORT address"))?;
            }
            "--expected-key" => args.expected_key = Some(value("--expected-key")?),
            "--scenario" => {
                let v = value("--scenario")?;
                args.scenario =
                    Scenario::from_options(&v).map_err(|e| format!("--scenario: {e}"))?;
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(Some(args))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("gatehouse-mock: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = MockProvider::builder()
        .listen(args.listen)
        .scenario(args.scenario);
    if let Some(key) = args.expected_key {
        builder = builder.expected_key(key);
    }
    let mock = match builder.start().await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("gatehouse-mock: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {}", mock.base_url());
    let _ = out.flush();
    wait_for_signal().await;
    mock.shutdown().await;
    ExitCode::SUCCESS
}
