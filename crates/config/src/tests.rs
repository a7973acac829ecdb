#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Unit tests: precedence, every-error reporting, secret references.

use std::collections::HashMap;
use std::io::Write;

use secrecy::ExposeSecret;

use super::*;

fn tmp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gh-config-{}-{}", std::process::id(), name));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("gatehouse.toml");
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    p
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load_with(file: Option<&Path>, env: &HashMap<String, String>, cli: Overrides) -> Result<Config, ConfigErrors> {
    load(&Sources { file, env, cli, extra_providers: vec![] })
}

const FULL: &str = r#"
data_dir = "/var/lib/gatehouse"
database_url = "sqlite:///var/lib/gatehouse/db.sqlite"
listen = "0.0.0.0:9000"
admin_listen = "127.0.0.1:9001"
env = "test"
body_limit = "8MiB"
shutdown_drain = "10s"

[upstream]
connect_timeout = 5
first_byte_timeout = "90s"
idle_timeout = "1m"
total_timeout = "10m"

[log]
format = "json"
level = "gatehouse=debug,info"

[dpop]
public_url = "https://gw.example.com/"
nonces = true
replay_window = "2m"

[[providers]]
name = "openai-main"
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key = "env:MY_OPENAI_KEY"

[[providers]]
name = "claude"
kind = "anthropic"
api_key = "literal-key"

[[models]]
name = "fast"
deployments = [
  { provider = "openai-main", model = "gpt-4o-mini", weight = 3, priority = 0 },
  { provider = "claude", model = "claude-haiku-4-5", priority = 1 },
]
"#;

#[test]
fn defaults_without_any_source() {
    let cfg = load_with(None, &env(&[]), Overrides::default()).unwrap();
    assert_eq!(cfg.data_dir, PathBuf::from("./gatehouse-data"));
    assert_eq!(cfg.database_url.expose_secret(), "sqlite://./gatehouse-data/gatehouse.db");
    assert_eq!(cfg.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(cfg.admin_listen.to_string(), "127.0.0.1:8081");
    assert_eq!(cfg.env, RunEnv::Live);
    assert_eq!(cfg.body_limit_bytes, 4 * 1024 * 1024);
    assert_eq!(cfg.shutdown_drain, Duration::from_secs(30));
    assert_eq!(cfg.log.format, LogFormat::Pretty);
    assert!(cfg.providers.is_empty());
}

#[test]
fn a_file_using_every_key_parses() {
    let p = tmp_file("full", FULL);
    let cfg = load_with(Some(&p), &env(&[("MY_OPENAI_KEY", "sk-from-env")]), Overrides::default()).unwrap();
    assert_eq!(cfg.listen.port(), 9000);
    assert_eq!(cfg.env, RunEnv::Test);
    assert_eq!(cfg.body_limit_bytes, 8 * 1024 * 1024);
    assert_eq!(cfg.upstream.connect, Duration::from_secs(5));
    assert_eq!(cfg.upstream.idle, Duration::from_secs(60));
    assert_eq!(cfg.log.format, LogFormat::Json);
    assert_eq!(cfg.dpop, DpopConfig { public_url: Some("https://gw.example.com".into()), nonces: true, replay_window: Duration::from_secs(120) });
    assert_eq!(cfg.providers.len(), 2);
    assert_eq!(cfg.providers[0].api_key.as_ref().unwrap().expose_secret(), "sk-from-env");
    assert_eq!(cfg.providers[1].api_key.as_ref().unwrap().expose_secret(), "literal-key");
    assert_eq!(cfg.models[0].deployments[0].weight, 3);
    assert_eq!(cfg.models[0].deployments[1].weight, 1);
    assert_eq!(cfg.models[0].deployments[1].priority, 1);
}

#[test]
fn precedence_file_then_env_then_cli() {
    let p = tmp_file("prec", "listen = \"127.0.0.1:1000\"\nadmin_listen = \"127.0.0.1:1001\"\ndata_dir = \"/from/file\"\n");
    let e = env(&[("GATEHOUSE_LISTEN", "127.0.0.1:2000"), ("GATEHOUSE_DATA_DIR", "/from/env")]);
    // file only for admin_listen, env beats file for listen and data_dir
    let cfg = load_with(Some(&p), &e, Overrides::default()).unwrap();
    assert_eq!(cfg.listen.port(), 2000);
    assert_eq!(cfg.admin_listen.port(), 1001);
    assert_eq!(cfg.data_dir, PathBuf::from("/from/env"));
    assert_eq!(cfg.database_url.expose_secret(), "sqlite:///from/env/gatehouse.db");
    // CLI beats env
    let cli = Overrides { source: OverrideSource::Cli, listen: Some("127.0.0.1:3000".into()), data_dir: Some("/from/cli".into()), ..Default::default() };
    let cfg = load_with(Some(&p), &e, cli).unwrap();
    assert_eq!(cfg.listen.port(), 3000);
    assert_eq!(cfg.data_dir, PathBuf::from("/from/cli"));
}

#[test]
fn override_errors_name_their_source() {
    let e = env(&[("GATEHOUSE_LISTEN", "nope")]);
    let cli = Overrides { source: OverrideSource::Cli, admin_listen: Some("also-nope".into()), ..Default::default() };
    let err = load_with(None, &e, cli).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|i| i.path.as_str()).collect();
    assert!(paths.contains(&"env GATEHOUSE_LISTEN"), "{err}");
    assert!(paths.contains(&"--admin-listen"), "{err}");
}

#[test]
fn every_error_is_reported_at_once() {
    let text = r#"
listen = "not-an-address"
admin_listen = "127.0.0.1:99999"
colour = "blue"
env = "prod"
body_limit = "4 parsecs"

[log]
format = "xml"
verbosity = 3

[[providers]]
name = "dup"
kind = "openai"

[[providers]]
name = "dup"
kind = "palm"
base_url = "ftp://example.com"

[[providers]]
kind = "openai"
api_key = "env:GH_TEST_SURELY_UNSET_VAR"

[[models]]
name = "m"
deployments = [{ provider = "nowhere", model = "x" }]

[[models]]
name = "m"
deployments = [{ provider = "dup", model = "x", extra = 1 }]
"#;
    let p = tmp_file("many", text);
    let err = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|i| i.path.as_str()).collect();
    // structural errors (unknown keys, missing keys) are all reported together
    for expected in ["colour", "log.verbosity", "providers[2].name", "models[1].deployments[0].extra"] {
        assert!(paths.contains(&expected), "missing {expected} in:\n{err}");
    }
    // fix the structure, keep the semantic errors: all reported together too
    let text = text
        .replace("colour = \"blue\"\n", "")
        .replace("verbosity = 3\n", "")
        .replace("[[providers]]\nkind = \"openai\"\napi_key", "[[providers]]\nname = \"third\"\nkind = \"openai\"\napi_key")
        .replace(", extra = 1", "");
    let p = tmp_file("many2", &text);
    let err = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|i| i.path.as_str()).collect();
    for expected in [
        "listen",
        "admin_listen",
        "env",
        "body_limit",
        "log.format",
        "providers[1].name",
        "providers[1].kind",
        "providers[1].base_url",
        "providers[2].api_key",
        "models[0].deployments[0].provider",
        "models[1].name",
    ] {
        assert!(paths.contains(&expected), "missing {expected} in:\n{err}");
    }
    assert!(err.to_string().contains("duplicate provider name `dup`"));
    assert!(err.to_string().contains("GH_TEST_SURELY_UNSET_VAR is not set"));
}

#[test]
fn wrong_types_are_reported_with_paths() {
    let p = tmp_file("types", "listen = 8080\n[[providers]]\nname = 1\nkind = \"openai\"\n[upstream]\nidle_timeout = true\n");
    let err = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|i| i.path.as_str()).collect();
    assert!(paths.contains(&"listen"));
    assert!(paths.contains(&"providers[0].name"));
    assert!(paths.contains(&"upstream.idle_timeout"));
}

#[test]
fn syntax_errors_name_the_line() {
    let p = tmp_file("syntax", "listen = \"a\"\nthis is not toml\n");
    let err = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err();
    assert!(err.0[0].path.starts_with("line "), "{err}");
}

#[test]
fn several_syntax_errors_are_reported_with_line_and_column() {
    let p = tmp_file("syntax-many", "listen = \"a\"\nthis is not toml\nenv = \"live\"\nbody_limit = = 3\n");
    let err = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|i| i.path.as_str()).collect();
    assert!(paths.iter().any(|p| p.starts_with("line 2, column ")), "{err}");
    assert!(paths.iter().any(|p| p.starts_with("line 4, column ")), "{err}");
    assert!(err.0.iter().all(|i| i.message.starts_with("TOML syntax error")), "{err}");
}

#[test]
fn secret_references_resolve_and_never_leak() {
    let e = env(&[("K", "sk-secret-value")]);
    assert_eq!(resolve_secret("env:K", &e).unwrap().expose_secret(), "sk-secret-value");
    let dir = std::env::temp_dir().join(format!("gh-config-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("key");
    std::fs::write(&f, "sk-file-value\n").unwrap();
    assert_eq!(resolve_secret(&format!("file:{}", f.display()), &e).unwrap().expose_secret(), "sk-file-value");
    assert_eq!(resolve_secret("sk-literal", &e).unwrap().expose_secret(), "sk-literal");
    assert!(resolve_secret("env:MISSING_ONE", &e).unwrap_err().contains("MISSING_ONE"));
    assert!(resolve_secret("file:/definitely/not/here", &e).is_err());
    assert!(resolve_secret("env:", &e).is_err());
    // Debug of a provider never shows the key
    let p = ProviderConfig { name: "x".into(), kind: ProviderKindName::OpenAi, base_url: None, api_key: Some("sk-secret-value".to_string().into()) };
    assert!(!format!("{p:?}").contains("sk-secret-value"));
}

#[test]
fn env_providers_are_added_and_override_file_ones() {
    let p = tmp_file("envprov", "[[providers]]\nname = \"openai\"\nkind = \"openai\"\napi_key = \"from-file\"\n[[models]]\nname = \"c\"\ndeployments = [{ provider = \"anthropic\", model = \"claude\" }]\n");
    let e = env(&[("OPENAI_API_KEY", "sk-env"), ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"), ("ANTHROPIC_API_KEY", "sk-ant")]);
    let cfg = load_with(Some(&p), &e, Overrides::default()).unwrap();
    let openai = cfg.providers.iter().find(|p| p.name == "openai").unwrap();
    assert_eq!(openai.api_key.as_ref().unwrap().expose_secret(), "sk-env");
    assert_eq!(openai.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));
    assert!(cfg.providers.iter().any(|p| p.name == "anthropic" && p.kind == ProviderKindName::Anthropic));
    assert_eq!(cfg.providers.len(), 2);
}

#[test]
fn units() {
    assert_eq!(parse_duration_str("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration_str("7d").unwrap(), Duration::from_secs(7 * 86400));
    assert_eq!(parse_duration_str("3600s").unwrap(), Duration::from_secs(3600));
    assert!(parse_duration_str("1y").is_err());
    assert!(parse_duration_str("").is_err());
    assert_eq!(parse_size(&raw::RawSize::Text("512KiB".into())).unwrap(), 512 * 1024);
    assert!(parse_size(&raw::RawSize::Bytes(-1)).is_err());
}

#[test]
fn every_vendor_env_provider() {
    let e = env(&[
        ("GEMINI_API_KEY", "g-key"),
        ("GEMINI_BASE_URL", "http://127.0.0.1:9/"),
        ("MISTRAL_API_KEY", "m-key"),
        ("DEEPSEEK_API_KEY", "d-key"),
        ("GROQ_API_KEY", " "),
        ("AZURE_OPENAI_API_KEY", "a-key"),
        ("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com"),
        ("OLLAMA_HOST", "127.0.0.1:11434"),
    ]);
    let cfg = load_with(None, &e, Overrides::default()).unwrap();
    let get = |n: &str| cfg.providers.iter().find(|p| p.name == n);
    let g = get("gemini").unwrap();
    assert_eq!(g.kind, ProviderKindName::Gemini);
    assert_eq!(g.base_url.as_deref(), Some("http://127.0.0.1:9"));
    assert_eq!(g.api_key.as_ref().unwrap().expose_secret(), "g-key");
    assert_eq!(get("mistral").unwrap().kind, ProviderKindName::Mistral);
    assert!(get("mistral").unwrap().base_url.is_none(), "the kind's default applies");
    assert_eq!(get("deepseek").unwrap().kind, ProviderKindName::DeepSeek);
    assert!(get("groq").is_none(), "a blank key counts as unset");
    assert_eq!(get("azure").unwrap().base_url.as_deref(), Some("https://res.openai.azure.com"));
    let o = get("ollama").unwrap();
    assert_eq!(o.base_url.as_deref(), Some("http://127.0.0.1:11434"));
    assert!(o.api_key.is_none());
    // Azure without its endpoint is a configuration error naming the variable.
    let e = env(&[("AZURE_OPENAI_API_KEY", "a-key")]);
    let err = load_with(None, &e, Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("AZURE_OPENAI_ENDPOINT"), "{err}");
    assert!(!err.to_string().contains("a-key"));
}

#[test]
fn file_provider_kinds() {
    let p = tmp_file("kinds", "[[providers]]\nname = \"g\"\nkind = \"gemini\"\napi_key = \"k\"\n[[providers]]\nname = \"x\"\nkind = \"generic\"\n");
    let err = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("providers[1].base_url"), "{err}");
    let p = tmp_file("kinds2", "[[providers]]\nname = \"g\"\nkind = \"bard\"\n");
    let err = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("gemini"), "the message lists the kinds: {err}");
}

#[test]
fn bedrock_from_the_aws_environment() {
    let get = |cfg: &Config| cfg.providers.iter().find(|p| p.name == "bedrock").cloned();
    // The key pair (+ session token) becomes one sealed JSON secret; the region picks the endpoint.
    let e = env(&[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "s3cr3t-canary"), ("AWS_SESSION_TOKEN", "tok"), ("AWS_DEFAULT_REGION", "eu-west-1")]);
    let p = get(&load_with(None, &e, Overrides::default()).unwrap()).unwrap();
    assert_eq!(p.kind, ProviderKindName::Bedrock);
    assert_eq!(p.base_url.as_deref(), Some("https://bedrock-runtime.eu-west-1.amazonaws.com"));
    let creds: serde_json::Value = serde_json::from_str(p.api_key.as_ref().unwrap().expose_secret()).unwrap();
    assert_eq!(creds, serde_json::json!({"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s3cr3t-canary", "session_token": "tok", "region": "eu-west-1"}));
    assert!(!format!("{p:?}").contains("s3cr3t-canary"));
    // An API key wins; BEDROCK_BASE_URL overrides the endpoint; AWS_REGION wins over the default.
    let e = env(&[("AWS_BEARER_TOKEN_BEDROCK", "ABSKkey"), ("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "x"),
        ("AWS_REGION", "us-west-2"), ("AWS_DEFAULT_REGION", "eu-west-1"), ("BEDROCK_BASE_URL", "http://127.0.0.1:9/")]);
    let p = get(&load_with(None, &e, Overrides::default()).unwrap()).unwrap();
    assert_eq!(p.api_key.as_ref().unwrap().expose_secret(), "ABSKkey");
    assert_eq!(p.base_url.as_deref(), Some("http://127.0.0.1:9"));
    // Nothing AWS: no provider. Half a key pair or a bad region: an error naming the variable only.
    assert!(get(&load_with(None, &env(&[("AWS_REGION", "us-east-1")]), Overrides::default()).unwrap()).is_none());
    let err = load_with(None, &env(&[("AWS_ACCESS_KEY_ID", "AKID")]), Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    let err = load_with(None, &env(&[("AWS_SECRET_ACCESS_KEY", "s3cr3t-canary"), ("AWS_ACCESS_KEY_ID", "A"), ("AWS_REGION", "Mars 1")]), Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("AWS_REGION") && !err.to_string().contains("s3cr3t-canary"), "{err}");
}

#[test]
fn bedrock_file_secrets_are_checked() {
    let p = tmp_file("bedrock-secret", "[[providers]]\nname = \"b\"\nkind = \"bedrock\"\napi_key = '{\"access_key_id\":\"AKID\",\"secret\":\"s3cr3t-canary\"}'\n[[providers]]\nname = \"k\"\nkind = \"bedrock\"\napi_key = \"ABSKkey\"\n");
    let err = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("providers[0].api_key") && !text.contains("providers[1]"), "{text}");
    assert!(!text.contains("s3cr3t-canary"), "{text}");
}

#[test]
fn tls_from_file_env_and_flags_with_pairing_and_file_checks() {
    let dir = tmp_file("tls", "").parent().unwrap().to_path_buf();
    for f in ["cert.pem", "key.pem", "ca.pem", "other.pem"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
    let path = |f: &str| dir.join(f).display().to_string();
    // default: plain HTTP
    assert_eq!(load_with(None, &env(&[]), Overrides::default()).unwrap().tls, None);
    // file, then env overriding one path, then a flag overriding another
    let toml = format!("[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n", path("cert.pem"), path("key.pem"), path("ca.pem"));
    let p = tmp_file("tls-file", &toml);
    let cfg = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap();
    let tls = cfg.tls.unwrap();
    assert_eq!(tls.cert, dir.join("cert.pem"));
    assert_eq!(tls.client_ca, Some(dir.join("ca.pem")));
    let e = env(&[("GATEHOUSE_TLS_CLIENT_CA", &path("other.pem"))]);
    let cli = Overrides { source: OverrideSource::Cli, tls_key: Some(path("other.pem")), ..Default::default() };
    let tls = load_with(Some(&p), &e, cli).unwrap().tls.unwrap();
    assert_eq!((tls.key, tls.client_ca), (dir.join("other.pem"), Some(dir.join("other.pem"))));
    // pairing and missing files, each reported with its source
    let e = env(&[("GATEHOUSE_TLS_CERT", &path("cert.pem"))]);
    let err = load_with(None, &e, Overrides::default()).unwrap_err();
    assert!(err.0.iter().any(|i| i.path == "env GATEHOUSE_TLS_CERT" && i.message.contains("private key")), "{err}");
    let cli = Overrides { source: OverrideSource::Cli, tls_client_ca: Some(path("ca.pem")), ..Default::default() };
    let err = load_with(None, &env(&[]), cli).unwrap_err();
    assert!(err.0.iter().any(|i| i.path == "--tls-client-ca" && i.message.contains("need TLS")), "{err}");
    let e = env(&[("GATEHOUSE_TLS_CERT", &path("cert.pem")), ("GATEHOUSE_TLS_KEY", &path("missing.pem"))]);
    let err = load_with(None, &e, Overrides::default()).unwrap_err();
    assert!(err.0.iter().any(|i| i.path == "env GATEHOUSE_TLS_KEY" && i.message.contains("not a readable file")), "{err}");
    // unknown keys in [tls] are reported
    let p = tmp_file("tls-bad", "[tls]\ncertificate = \"x\"\n");
    let err = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err();
    assert!(err.0.iter().any(|i| i.path == "tls.certificate"), "{err}");
}

/// Issue 5: `[dpop]` in the file < `GATEHOUSE_PUBLIC_URL` / `GATEHOUSE_DPOP_NONCES` /
/// `GATEHOUSE_DPOP_REPLAY_WINDOW` < `--public-url` / `--dpop-nonces` / `--dpop-replay-window`.
#[test]
fn dpop_settings_file_env_flag_precedence() {
    assert_eq!(load_with(None, &env(&[]), Overrides::default()).unwrap().dpop, DpopConfig::default());
    let p = tmp_file("dpop", "[dpop]\npublic_url = \"https://file.example/\"\nnonces = true\nreplay_window = 120\n");
    let file = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap().dpop;
    assert_eq!(file, DpopConfig { public_url: Some("https://file.example".into()), nonces: true, replay_window: Duration::from_secs(120) });
    let vars = env(&[("GATEHOUSE_PUBLIC_URL", "https://env.example"), ("GATEHOUSE_DPOP_NONCES", "false"), ("GATEHOUSE_DPOP_REPLAY_WINDOW", "3m")]);
    let from_env = load_with(Some(&p), &vars, Overrides::default()).unwrap().dpop;
    assert_eq!(from_env, DpopConfig { public_url: Some("https://env.example".into()), nonces: false, replay_window: Duration::from_secs(180) });
    let flags = Overrides {
        source: OverrideSource::Cli,
        public_url: Some("http://flag.example:8080/gw".into()),
        dpop_nonces: Some("on".into()),
        dpop_replay_window: Some("600".into()),
        ..Default::default()
    };
    let from_flags = load_with(Some(&p), &vars, flags).unwrap().dpop;
    assert_eq!(from_flags, DpopConfig { public_url: Some("http://flag.example:8080/gw".into()), nonces: true, replay_window: Duration::from_secs(600) });
}

/// `check-config` reports every bad DPoP setting with the key, variable or flag to blame.
#[test]
fn dpop_settings_are_validated_with_their_source_named() {
    let p = tmp_file("dpop-bad", "[dpop]\npublic_url = \"gw.example.com\"\nnonces = \"sometimes\"\nreplay_window = \"5s\"\n");
    let errs = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err().to_string();
    assert!(errs.contains("dpop.nonces"), "{errs}");
    let p = tmp_file("dpop-bad2", "[dpop]\npublic_url = \"https://u:p@gw.example.com\"\nreplay_window = \"5s\"\nfoo = 1\n");
    let errs = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err().to_string();
    assert!(errs.contains("dpop.foo"), "{errs}");
    let p = tmp_file("dpop-bad3", "[dpop]\npublic_url = \"https://u:p@gw.example.com\"\nreplay_window = \"5s\"\n");
    let errs = load_with(Some(&p), &env(&[]), Overrides::default()).unwrap_err().to_string();
    assert!(errs.contains("dpop.public_url") && errs.contains("dpop.replay_window"), "{errs}");
    let vars = env(&[("GATEHOUSE_PUBLIC_URL", "https://gw.example.com/?x=1"), ("GATEHOUSE_DPOP_NONCES", "maybe"), ("GATEHOUSE_DPOP_REPLAY_WINDOW", "1h")]);
    let errs = load_with(None, &vars, Overrides::default()).unwrap_err().to_string();
    for name in ["GATEHOUSE_PUBLIC_URL", "GATEHOUSE_DPOP_NONCES", "GATEHOUSE_DPOP_REPLAY_WINDOW"] {
        assert!(errs.contains(name), "{name}: {errs}");
    }
    let flags = Overrides { source: OverrideSource::Cli, dpop_replay_window: Some("soon".into()), ..Default::default() };
    let errs = load_with(None, &env(&[]), flags).unwrap_err().to_string();
    assert!(errs.contains("--dpop-replay-window"), "{errs}");
}

#[test]
fn rest_allow_upstream_from_file_env_and_bad_cidrs_reported() {
    let file = tmp_file("rest-allow", "[rest]\nallow_upstream = [\"127.0.0.0/8\", \"::1\"]\n");
    let c = load_with(Some(&file), &env(&[]), Overrides::default()).unwrap();
    assert_eq!(c.rest_allow_upstream, vec!["127.0.0.0/8".to_string(), "::1".to_string()]);
    let c = load_with(Some(&file), &env(&[("GATEHOUSE_REST_ALLOW_UPSTREAM", "10.1.0.0/16, 127.0.0.1")]), Overrides::default()).unwrap();
    assert_eq!(c.rest_allow_upstream, vec!["10.1.0.0/16".to_string(), "127.0.0.1".to_string()]);
    assert!(load_with(None, &env(&[]), Overrides::default()).unwrap().rest_allow_upstream.is_empty());
    let bad = tmp_file("rest-allow-bad", "[rest]\nallow_upstream = [\"127.0.0.0/33\", \"nope\"]\n");
    let e = load_with(Some(&bad), &env(&[]), Overrides::default()).unwrap_err();
    assert_eq!(e.0.iter().filter(|i| i.path == "rest.allow_upstream").count(), 2, "{e:?}");
}
