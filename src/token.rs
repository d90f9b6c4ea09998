//! `transcript-gateway token mint`: print a signed bearer token. It reads the
//! same configuration as `serve` (the secret, issuer and audience), so a
//! token it prints is one that gateway accepts.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{KeyError, Minter, Scopes, TaskGrant};
use crate::config::Config;

/// Flags of `token mint`.
#[derive(Debug, clap::Args)]
pub struct MintArgs {
    /// The task the token may touch, or '*' for every task.
    #[arg(long)]
    pub task: String,
    /// Scopes, comma- or space-separated: transcripts:read,
    /// transcripts:write (implies read), admin.
    #[arg(long)]
    pub scope: String,
    /// How long the token is valid, such as 12h, 30m or 7d.
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Who the token is for (its `sub` claim), shown in the gateway's logs.
    #[arg(long, default_value = "transcript-gateway-cli")]
    pub sub: String,
    /// Sign with this Ed25519 or RSA private key (PEM, PKCS#8) instead of
    /// TG_AUTH_SECRET.
    #[arg(long)]
    pub private_key_file: Option<PathBuf>,
}

/// Signs the token `args` describe.
pub fn mint(config: &Config, args: &MintArgs) -> Result<String, KeyError> {
    let tasks = TaskGrant::parse(&args.task).map_err(|e| KeyError::new(format!("--task: {e}")))?;
    let scopes =
        Scopes::parse_strict(&args.scope).map_err(|e| KeyError::new(format!("--scope: {e}")))?;
    if args.ttl < Duration::from_secs(1) {
        return Err(KeyError::new("--ttl must be at least 1s"));
    }
    if args.sub.is_empty() {
        return Err(KeyError::new("--sub must not be empty"));
    }
    let minter = Minter::new(&config.auth(), args.private_key_file.as_deref())?;
    minter.mint(&tasks, scopes, args.ttl, &args.sub)
}
