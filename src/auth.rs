//! Who may call what. Every `/v1/tasks/{task_id}/…` request carries a bearer
//! JWT scoped to one task (or `*`) and to `transcripts:read`,
//! `transcripts:write` and `admin`; the [`require`] middleware checks it once,
//! before any handler runs, so no handler can forget. [`Minter`] signs such
//! tokens for `transcript-gateway token mint`.
//!
//! Tokens are verified with an HS256 secret and/or an Ed25519 or RSA public
//! key (the orchestrator keeps the private key). Only the algorithms of the
//! configured keys are accepted: `alg: none` and algorithm confusion (an HS256
//! token signed with the public key's bytes) are refused.
//!
//! What this module does not own: the token's claims never reach storage, and
//! the engine knows nothing of tokens.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::TaskId;
use crate::error::Error;

/// Clock skew tolerated on `exp` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 5;
/// Shortest accepted HS256 secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// The claim value that grants every task.
pub const ANY_TASK: &str = "*";

/// One permission a token can carry. The wire names are persisted in tokens
/// that live for hours: never rename them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `transcripts:read`: GET and HEAD on the task's routes.
    Read,
    /// `transcripts:write`: every method on the task's routes (implies read).
    Write,
    /// `admin`: the `/admin` routes (and `/metrics` when protected).
    Admin,
}

impl Scope {
    /// The scope's name in the `scope` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "transcripts:read",
            Scope::Write => "transcripts:write",
            Scope::Admin => "admin",
        }
    }

    fn parse(name: &str) -> Option<Scope> {
        [Scope::Read, Scope::Write, Scope::Admin]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// The set of scopes a token grants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scopes {
    read: bool,
    write: bool,
    admin: bool,
}

impl Scopes {
    /// Parses scope names separated by spaces and/or commas, refusing unknown
    /// names (a typo must not mint a token that silently lacks a scope).
    pub fn parse_strict(text: &str) -> Result<Scopes, String> {
        let mut scopes = Scopes::default();
        for name in text.split([' ', ',']).filter(|s| !s.is_empty()) {
            let scope = Scope::parse(name).ok_or_else(|| {
                format!(
                    "unknown scope {name:?}; scopes are {}, {} and {}",
                    Scope::Read.as_str(),
                    Scope::Write.as_str(),
                    Scope::Admin.as_str()
                )
            })?;
            scopes.insert(scope);
        }
        if scopes == Scopes::default() {
            return Err("at least one scope is needed".into());
        }
        Ok(scopes)
    }

    /// Parses a token's `scope` claim; names this gateway does not know are
    /// ignored (they may belong to another service).
    fn from_claim(text: &str) -> Scopes {
        let mut scopes = Scopes::default();
        for scope in text.split(' ').filter_map(Scope::parse) {
            scopes.insert(scope);
        }
        scopes
    }

    fn insert(&mut self, scope: Scope) {
        match scope {
            Scope::Read => self.read = true,
            Scope::Write => self.write = true,
            Scope::Admin => self.admin = true,
        }
    }

    /// Whether these scopes allow `needed` (write implies read).
    pub fn allows(self, needed: Scope) -> bool {
        match needed {
            Scope::Read => self.read || self.write,
            Scope::Write => self.write,
            Scope::Admin => self.admin,
        }
    }

    /// The space-separated claim value.
    pub fn to_claim(self) -> String {
        let mut names = Vec::new();
        for (on, scope) in [
            (self.read, Scope::Read),
            (self.write, Scope::Write),
            (self.admin, Scope::Admin),
        ] {
            if on {
                names.push(scope.as_str());
            }
        }
        names.join(" ")
    }
}

/// The tasks a token may touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskGrant {
    /// `task_id: "*"`: every task.
    Any,
    /// One task.
    One(TaskId),
}

impl TaskGrant {
    /// Parses `*` or a task id.
    pub fn parse(text: &str) -> Result<TaskGrant, String> {
        if text == ANY_TASK {
            return Ok(TaskGrant::Any);
        }
        TaskId::new(text)
            .map(TaskGrant::One)
            .map_err(|e| e.to_string())
    }

    fn covers(&self, task: &TaskId) -> bool {
        match self {
            TaskGrant::Any => true,
            TaskGrant::One(granted) => granted == task,
        }
    }
}

impl fmt::Display for TaskGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskGrant::Any => f.write_str(ANY_TASK),
            TaskGrant::One(task) => write!(f, "{task}"),
        }
    }
}

/// The claims of a gateway token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token was issued to (a worker, an operator); for logs.
    pub sub: String,
    /// A task id, or `*` for every task.
    pub task_id: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
    /// A unique token id.
    pub jti: String,
    /// The issuer, when the deployment names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The audience, when the deployment names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// A verified caller, put in the request's extensions by [`require`].
#[derive(Clone, Debug)]
pub struct Principal {
    /// The token's subject.
    pub sub: String,
    /// The tasks it may touch.
    pub tasks: TaskGrant,
    /// What it may do.
    pub scopes: Scopes,
}

/// A string that never shows itself in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What verification and minting need from the configuration.
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    /// The HS256 secret (at least [`MIN_SECRET_LEN`] bytes).
    pub secret: Option<Secret>,
    /// A PEM file with an Ed25519 or RSA public key.
    pub public_key_file: Option<std::path::PathBuf>,
    /// The `iss` every token must carry, when set.
    pub issuer: Option<String>,
    /// The `aud` every token must carry, when set.
    pub audience: Option<String>,
}

impl AuthSettings {
    /// Whether any verification key is configured.
    pub fn has_key(&self) -> bool {
        self.secret.is_some() || self.public_key_file.is_some()
    }
}

/// A key or token that cannot be used, said for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct KeyError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl KeyError {
    /// A key error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// A key error with this message, caused by `cause`.
    fn caused_by(
        message: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(cause.into()),
        }
    }
}

/// Why a token was not accepted. The messages go to clients: they say what
/// is wrong with the token, never anything about the keys.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization` header.
    #[error("missing bearer token: send 'Authorization: Bearer <token>'")]
    Missing,
    /// The header is not `Bearer <token>`, or the token is not a JWT.
    #[error("malformed bearer token: {0}")]
    Malformed(String),
    /// The token's `alg` is not one this gateway is configured for.
    #[error("token algorithm {0} is not accepted by this gateway")]
    Algorithm(String),
    /// The signature does not verify.
    #[error("token signature does not verify")]
    Signature,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// A claim is missing, has the wrong type or the wrong value.
    #[error("token claims are not valid: {0}")]
    Claims(String),
}

impl From<TokenError> for Error {
    fn from(err: TokenError) -> Self {
        Error::Unauthorized(err.to_string())
    }
}

/// The public key kinds a deployment can configure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PublicKind {
    Ed25519,
    Rsa,
}

/// Verifies bearer tokens against the configured keys.
pub struct Verifier {
    secret: Option<DecodingKey>,
    public: Option<(PublicKind, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.secret.is_some())
            .field("public", &self.public.as_ref().map(|(k, _)| *k))
            .finish()
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path)
        .map_err(|e| KeyError::caused_by(format!("cannot read key file {}", path.display()), e))
}

fn check_secret(secret: &Secret) -> Result<(), KeyError> {
    if secret.expose().len() < MIN_SECRET_LEN {
        return Err(KeyError::new(format!(
            "TG_AUTH_SECRET must be at least {MIN_SECRET_LEN} bytes (it is {}); \
             generate one with `openssl rand -base64 48`",
            secret.expose().len()
        )));
    }
    Ok(())
}

impl Verifier {
    /// Builds a verifier; `None` when no key is configured.
    pub fn from_settings(settings: &AuthSettings) -> Result<Option<Verifier>, KeyError> {
        if !settings.has_key() {
            return Ok(None);
        }
        let secret = match &settings.secret {
            Some(s) => {
                check_secret(s)?;
                Some(
                    DecodingKey::from_secret(s.expose().as_bytes())
                        .map_err(|e| KeyError::caused_by("TG_AUTH_SECRET cannot be used", e))?,
                )
            }
            None => None,
        };
        let public = match &settings.public_key_file {
            Some(path) => {
                let pem = read_pem(path)?;
                if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
                    Some((PublicKind::Ed25519, key))
                } else if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                    Some((PublicKind::Rsa, key))
                } else {
                    return Err(KeyError::new(format!(
                        "{} holds no Ed25519 or RSA public key in PEM",
                        path.display()
                    )));
                }
            }
            None => None,
        };
        Ok(Some(Verifier {
            secret,
            public,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        }))
    }

    fn key_for(&self, alg: Algorithm) -> Option<&DecodingKey> {
        match alg {
            Algorithm::HS256 => self.secret.as_ref(),
            Algorithm::EdDSA => match &self.public {
                Some((PublicKind::Ed25519, key)) => Some(key),
                _ => None,
            },
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => match &self.public {
                Some((PublicKind::Rsa, key)) => Some(key),
                _ => None,
            },
            _ => None,
        }
    }

    /// Verifies a token and returns who it speaks for.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            // `alg: none` and unknown algorithms fail here, before any key.
            TokenError::Malformed(match e.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_) => {
                    "the header is not a JWT header this gateway accepts (alg: none is refused)"
                        .into()
                }
                _ => e.to_string(),
            })
        })?;
        let key = self
            .key_for(header.alg)
            .ok_or_else(|| TokenError::Algorithm(format!("{:?}", header.alg)))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        validation.validate_aud = self.audience.is_some();
        if let Some(iss) = &self.issuer {
            validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
            validation.set_issuer(&[iss]);
        }
        if let Some(aud) = &self.audience {
            validation.set_audience(&[aud]);
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => TokenError::Signature,
                K::ExpiredSignature => TokenError::Expired,
                K::InvalidAlgorithm => TokenError::Algorithm(format!("{:?}", header.alg)),
                K::InvalidIssuer => TokenError::Claims("iss is not the configured issuer".into()),
                K::InvalidAudience => {
                    TokenError::Claims("aud is not the configured audience".into())
                }
                K::MissingRequiredClaim(c) => TokenError::Claims(format!("{c} is missing")),
                K::Json(_) => TokenError::Claims(
                    "sub, task_id, scope, exp, iat and jti are required with their types".into(),
                ),
                _ => TokenError::Malformed(e.to_string()),
            }
        })?;
        let claims = data.claims;
        if claims.iat > now_secs() + LEEWAY_SECS {
            return Err(TokenError::Claims("iat is in the future".into()));
        }
        let tasks = TaskGrant::parse(&claims.task_id)
            .map_err(|e| TokenError::Claims(format!("task_id: {e}")))?;
        Ok(Principal {
            sub: claims.sub,
            tasks,
            scopes: Scopes::from_claim(&claims.scope),
        })
    }
}

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Signs tokens: with the HS256 secret, or with an Ed25519 or RSA private key.
pub struct Minter {
    key: EncodingKey,
    alg: Algorithm,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Minter {
    /// A minter from a private key file (PEM), or else the HS256 secret.
    pub fn new(settings: &AuthSettings, private_key_file: Option<&Path>) -> Result<Self, KeyError> {
        let (key, alg) = match (private_key_file, &settings.secret) {
            (Some(path), _) => {
                let pem = read_pem(path)?;
                if let Ok(key) = EncodingKey::from_ed_pem(&pem) {
                    (key, Algorithm::EdDSA)
                } else if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
                    (key, Algorithm::RS256)
                } else {
                    return Err(KeyError::new(format!(
                        "{} holds no Ed25519 or RSA private key in PEM (PKCS#8)",
                        path.display()
                    )));
                }
            }
            (None, Some(secret)) => {
                check_secret(secret)?;
                let key = EncodingKey::from_secret(secret.expose().as_bytes())
                    .map_err(|e| KeyError::caused_by("TG_AUTH_SECRET cannot be used", e))?;
                (key, Algorithm::HS256)
            }
            (None, None) => {
                return Err(KeyError::new(
                    "no signing key: set TG_AUTH_SECRET, or pass --private-key-file with the \
                     private half of TG_AUTH_PUBLIC_KEY_FILE",
                ))
            }
        };
        Ok(Self {
            key,
            alg,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        })
    }

    /// Signs a token for `tasks` with `scopes`, valid for `ttl`.
    pub fn mint(
        &self,
        tasks: &TaskGrant,
        scopes: Scopes,
        ttl: Duration,
        sub: &str,
    ) -> Result<String, KeyError> {
        let iat = now_secs();
        let claims = Claims {
            sub: sub.to_string(),
            task_id: tasks.to_string(),
            scope: scopes.to_claim(),
            exp: iat.saturating_add(ttl.as_secs()),
            iat,
            jti: ulid::Ulid::new().to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, &self.key)
            .map_err(|e| KeyError::caused_by("cannot sign the token", e))
    }
}

/// What a request needs, decided from its method and raw path alone.
#[derive(Debug, PartialEq, Eq)]
enum Need<'a> {
    /// Health, readiness, the API description, the dashboard page and its
    /// static files (the page asks for a token itself), and (by default) metrics.
    Open,
    /// Any valid token (a `/v1` path outside a task: the router answers 404).
    Token,
    /// `scope` on the task named by the raw path segment.
    Task(&'a str, Scope),
    /// `admin`, and the task named by the raw path segment when there is one.
    Admin(Option<&'a str>),
}

fn need<'a>(method: &Method, path: &'a str, metrics_protected: bool) -> Need<'a> {
    let scope = if method == Method::GET || method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Write
    };
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    // Only `/admin` itself and `/admin/assets/<file>`: never `/admin/v1/...`.
    if crate::api::paths::is_dashboard(path) {
        return Need::Open;
    }
    if under("/admin") {
        let task = path
            .strip_prefix("/admin/v1/tasks/")
            .map(|rest| rest.split('/').next().unwrap_or(rest));
        return Need::Admin(task);
    }
    if let Some(rest) = path.strip_prefix("/v1/tasks/") {
        return Need::Task(rest.split('/').next().unwrap_or(rest), scope);
    }
    if under("/v1") {
        return Need::Token;
    }
    if path == crate::api::paths::METRICS && metrics_protected {
        return Need::Admin(None);
    }
    Need::Open
}

/// Decodes and validates a task id taken from the raw path, as the router's
/// own path extractor would.
fn path_task(raw: &str) -> Result<TaskId, Error> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Error::invalid("task_id in the path is not valid UTF-8"))?;
    Ok(TaskId::new(decoded.into_owned())?)
}

/// The bearer token of a request, if it sent exactly one `Authorization`.
fn bearer(request: &Request) -> Result<&str, TokenError> {
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(TokenError::Missing)?;
    if values.next().is_some() {
        return Err(TokenError::Malformed(
            "more than one Authorization header".into(),
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| TokenError::Malformed("the header is not visible ASCII".into()))?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or_else(|| TokenError::Malformed("expected 'Bearer <token>'".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::Malformed("expected 'Bearer <token>'".into()));
    }
    Ok(token.trim())
}

/// The state [`require`] runs with.
#[derive(Clone, Debug)]
pub struct Guard {
    /// `None` runs open (`--insecure-no-auth`, loopback only).
    pub verifier: Option<Arc<Verifier>>,
    /// Whether `/metrics` needs an `admin` token.
    pub metrics_require_auth: bool,
}

fn authorize(guard: &Guard, request: &Request) -> Result<Option<Principal>, Error> {
    let need = need(
        request.method(),
        request.uri().path(),
        guard.metrics_require_auth,
    );
    let Some(verifier) = &guard.verifier else {
        return Ok(None);
    };
    if need == Need::Open {
        return Ok(None);
    }
    let principal = verifier.verify(bearer(request)?)?;
    let (task, scope) = match need {
        Need::Open | Need::Token => return Ok(Some(principal)),
        Need::Task(raw, scope) => (Some(raw), scope),
        Need::Admin(raw) => (raw, Scope::Admin),
    };
    if !principal.scopes.allows(scope) {
        return Err(Error::Forbidden(format!(
            "this token lacks the {} scope this request needs",
            scope.as_str()
        )));
    }
    match task {
        Some(raw) => {
            let task = path_task(raw)?;
            if !principal.tasks.covers(&task) {
                return Err(Error::Forbidden(format!(
                    "this token is not valid for task {task}"
                )));
            }
        }
        // Fleet-wide admin routes need a token for every task.
        None if scope == Scope::Admin && principal.tasks != TaskGrant::Any => {
            return Err(Error::Forbidden(
                "fleet-wide admin routes need a token with task_id '*'".into(),
            ));
        }
        None => {}
    }
    Ok(Some(principal))
}

/// Middleware: refuses a request whose token does not allow it (401 for a
/// missing or invalid token, 403 for the wrong task or scope) before routing,
/// so paths without a route are protected too.
pub async fn require(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    match authorize(&guard, &request) {
        Ok(principal) => {
            if let Some(p) = principal {
                request.extensions_mut().insert(p);
            }
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn settings() -> AuthSettings {
        AuthSettings {
            secret: Some(Secret::new(SECRET)),
            ..AuthSettings::default()
        }
    }

    fn verifier() -> Verifier {
        Verifier::from_settings(&settings()).unwrap().unwrap()
    }

    fn mint(task: &str, scopes: &str) -> String {
        Minter::new(&settings(), None)
            .unwrap()
            .mint(
                &TaskGrant::parse(task).unwrap(),
                Scopes::parse_strict(scopes).unwrap(),
                Duration::from_secs(60),
                "test",
            )
            .unwrap()
    }

    #[test]
    fn scopes_parse_with_commas_or_spaces_and_refuse_unknown_names() {
        let s = Scopes::parse_strict("admin,transcripts:read").unwrap();
        assert!(s.allows(Scope::Admin) && s.allows(Scope::Read) && !s.allows(Scope::Write));
        let w = Scopes::parse_strict("transcripts:write").unwrap();
        assert!(w.allows(Scope::Read), "write implies read");
        assert!(Scopes::parse_strict("transcripts:raed")
            .unwrap_err()
            .contains("unknown scope"));
        assert!(Scopes::parse_strict(" , ").is_err());
        assert_eq!(
            Scopes::parse_strict("admin transcripts:read")
                .unwrap()
                .to_claim(),
            "transcripts:read admin"
        );
    }

    #[test]
    fn minted_tokens_verify_with_their_task_and_scopes() {
        let p = verifier()
            .verify(&mint("task-1", "transcripts:read"))
            .unwrap();
        assert_eq!(p.tasks, TaskGrant::One(TaskId::new("task-1").unwrap()));
        assert!(p.scopes.allows(Scope::Read) && !p.scopes.allows(Scope::Write));
        let any = verifier().verify(&mint("*", "admin")).unwrap();
        assert_eq!(any.tasks, TaskGrant::Any);
    }

    #[test]
    fn short_secrets_are_refused() {
        let short = AuthSettings {
            secret: Some(Secret::new("too-short")),
            ..AuthSettings::default()
        };
        let err = Verifier::from_settings(&short).unwrap_err().to_string();
        assert!(err.contains("at least 32 bytes"), "{err}");
        assert!(!err.contains("too-short"), "the secret must not be echoed");
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let text = format!("{:?}", settings());
        assert!(!text.contains(SECRET), "{text}");
    }

    #[test]
    fn needs_follow_the_path_and_method() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(need(&get, "/healthz", false), Need::Open);
        assert_eq!(need(&get, "/metrics", false), Need::Open);
        assert_eq!(need(&get, "/metrics", true), Need::Admin(None));
        assert_eq!(
            need(&get, "/v1/tasks/t1/binding", false),
            Need::Task("t1", Scope::Read)
        );
        assert_eq!(
            need(&post, "/v1/tasks/t%2e/lease", false),
            Need::Task("t%2e", Scope::Write)
        );
        assert_eq!(need(&get, "/v1/other", false), Need::Token);
        assert_eq!(
            need(&get, "/admin/v1/nothing-yet", false),
            Need::Admin(None)
        );
        assert_eq!(
            need(&post, "/admin/v1/tasks/t9/compact", false),
            Need::Admin(Some("t9"))
        );
        assert_eq!(need(&get, "/administer", false), Need::Open);
        assert_eq!(need(&get, "/admin", false), Need::Open);
        assert_eq!(need(&get, "/admin/assets/app.js", false), Need::Open);
        assert_eq!(need(&get, "/admin/", false), Need::Admin(None));
        assert_eq!(need(&get, "/admin/assets/", false), Need::Admin(None));
        assert_eq!(need(&get, "/admin/assets/a/b", false), Need::Admin(None));
        assert_eq!(need(&get, "/admin/v1/failures", false), Need::Admin(None));
        assert_eq!(
            need(&get, "/admin/v1/tasks/t9/export", false),
            Need::Admin(Some("t9"))
        );
    }
}
