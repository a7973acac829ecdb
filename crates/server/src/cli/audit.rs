//! `gatehouse audit` (query the audit log, newest first) and `gatehouse audit verify` (check the
//! hash chain; exit status 1 and the first broken link when it does not hold). Both go through
//! the admin API (`GET /admin/v1/audit`, `GET /admin/v1/audit/verify`).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{Client, Conn, finish, path_segment, rows, s, table};

/// `gatehouse audit [verify]`.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: Option<AuditCmd>,
    /// Only events of this type (e.g. key.revoked, auth.denied, anomaly.detected).
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// Only events about this key id.
    #[arg(long, value_name = "ID")]
    key: Option<String>,
    /// Only events with this keyed fingerprint.
    #[arg(long, value_name = "FP")]
    fingerprint: Option<String>,
    /// Only events at or after this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Page size (1-1000, default 50).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Older than this sequence number (paging).
    #[arg(long, value_name = "SEQ")]
    before: Option<i64>,
}

/// `gatehouse audit verify`.
#[derive(Debug, Clone, Subcommand)]
pub enum AuditCmd {
    /// Verify the hash chain; reports the first broken link.
    Verify,
}

/// Entry point of `gatehouse audit`.
pub async fn audit(args: AuditArgs) -> ExitCode {
    finish(audit_inner(args).await)
}

async fn audit_inner(args: AuditArgs) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    if let Some(AuditCmd::Verify) = args.cmd {
        let v = c.call(reqwest::Method::GET, "/audit/verify", None).await?;
        if c.json {
            c.print_json(&v);
        } else if v["ok"] == true {
            println!("ok: {} events, head seq {} hash {}", s(&v["checked"]), s(&v["head_seq"]), s(&v["head_hash"]));
        }
        if v["ok"] != true {
            return Err(format!(
                "audit chain broken at seq {} ({}); {} events before it verify",
                s(&v["first_broken"]["seq"]),
                s(&v["first_broken"]["reason"]),
                s(&v["checked"])
            ));
        }
        return Ok(());
    }
    let mut q = vec![format!("limit={}", args.limit)];
    for (k, v) in [("event_type", &args.event_type), ("key_id", &args.key), ("fingerprint", &args.fingerprint), ("since", &args.since)] {
        if let Some(v) = v {
            q.push(format!("{k}={}", path_segment(v)));
        }
    }
    if let Some(b) = args.before {
        q.push(format!("before_seq={b}"));
    }
    let v = c.call(reqwest::Method::GET, &format!("/audit?{}", q.join("&")), None).await?;
    if c.json {
        c.print_json(&v);
        return Ok(());
    }
    table(
        &["SEQ", "TIME", "TYPE", "ACTOR", "KEY", "FINGERPRINT", "IP", "REASON"],
        rows(&v)
            .iter()
            .map(|e| {
                vec![
                    s(&e["seq"]),
                    s(&e["at"]),
                    s(&e["event_type"]),
                    s(&e["actor"]),
                    s(&e["credential_id"]),
                    s(&e["fingerprint"]),
                    s(&e["ip"]),
                    s(&e["reason"]),
                ]
            })
            .collect(),
    );
    if !v["next_before_seq"].is_null() {
        println!("(more: --before {})", s(&v["next_before_seq"]));
    }
    Ok(())
}
