//! JWT signing keys of the authorization server (`token-security.md` §1.6 rotation): ES256
//! keys generated from the OS CSPRNG, the PKCS#8 private key sealed with the envelope scheme of
//! provider keys (G-8; AAD binds `oauth-signing-key:<kid>`), `kid` = RFC 7638 thumbprint. A key
//! is published in the JWKS from creation until `retire_at`, signs from `sign_from`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_auth::{Aad, KeyProvider, Sealed};
use gatehouse_store::{SigningKey, Store, StoreError};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::OAuthError;
use crate::jws::{ALG, EcPublicKey, EcSigningKey};

struct Loaded {
    meta: SigningKey,
    public: EcPublicKey,
    private: Option<Arc<EcSigningKey>>,
}

/// The key ring: public keys for verification and the JWKS; private keys to sign.
pub struct Signer {
    store: Arc<dyn Store>,
    kp: Arc<dyn KeyProvider>,
    keys: RwLock<Vec<Loaded>>,
}

fn aad(kid: &str) -> Aad {
    Aad { tenant_id: uuid::Uuid::nil(), credential_id: uuid::Uuid::nil(), provider: format!("oauth-signing-key:{kid}") }
}

impl Signer {
    pub(crate) fn new(store: Arc<dyn Store>, kp: Arc<dyn KeyProvider>) -> Self {
        Self { store, kp, keys: RwLock::new(Vec::new()) }
    }

    /// Reloads every key from the store (private keys are unsealed here; a key that cannot be
    /// unsealed is still published but never used to sign, and the failure is logged).
    pub(crate) async fn reload(&self) -> Result<(), StoreError> {
        let rows = self.store.list_signing_keys().await?;
        let mut loaded = Vec::new();
        for meta in rows {
            let Ok(jwk) = serde_json::from_str::<Value>(&meta.public_jwk) else { continue };
            let Ok(public) = EcPublicKey::from_jwk(&jwk) else { continue };
            let sealed = Sealed {
                format_version: meta.format_version,
                kek_id: meta.kek_id.clone(),
                wrapped_dek: meta.wrapped_dek.clone(),
                nonce: meta.nonce.clone(),
                ciphertext: meta.ciphertext.clone(),
            };
            let private = match gatehouse_auth::open(self.kp.as_ref(), &aad(&meta.kid), &sealed) {
                Ok(s) => URL_SAFE_NO_PAD.decode(s.expose_secret()).ok().and_then(|der| EcSigningKey::from_pkcs8(&der).ok()).map(Arc::new),
                Err(e) => {
                    tracing::error!(kid = %meta.kid, error = %e, "cannot unseal a JWT signing key");
                    None
                }
            };
            loaded.push(Loaded { meta, public, private });
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    async fn create_key(&self, sign_from: time::OffsetDateTime) -> Result<String, OAuthError> {
        let (key, der) = EcSigningKey::generate().map_err(|_| OAuthError::server())?;
        let kid = key.public().thumbprint();
        let sealed = gatehouse_auth::seal(self.kp.as_ref(), &aad(&kid), URL_SAFE_NO_PAD.encode(&der).as_bytes())
            .map_err(|_| OAuthError::server())?;
        let row = SigningKey {
            kid: kid.clone(),
            alg: ALG.into(),
            public_jwk: key.public().to_jwk().to_string(),
            format_version: sealed.format_version,
            kek_id: sealed.kek_id,
            wrapped_dek: sealed.wrapped_dek,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
            sign_from,
            retire_at: None,
            created_at: crate::now(),
        };
        self.store.create_signing_key(&row).await.map_err(|_| OAuthError::unavailable())?;
        tracing::info!(%kid, "JWT signing key created");
        self.reload().await.map_err(|_| OAuthError::unavailable())?;
        Ok(kid)
    }

    /// The key to sign with now: the newest live key whose `sign_from` has passed; creates the
    /// first key on demand.
    pub(crate) async fn current(&self) -> Result<(String, Arc<EcSigningKey>), OAuthError> {
        if let Some(k) = self.pick() {
            return Ok(k);
        }
        // First JWT ever (or every key retired): create one. Concurrent creators are harmless
        // (both keys are valid); the reload picks the newest.
        self.reload().await.map_err(|_| OAuthError::unavailable())?;
        if let Some(k) = self.pick() {
            return Ok(k);
        }
        self.create_key(crate::now()).await?;
        self.pick().ok_or_else(OAuthError::server)
    }

    fn pick(&self) -> Option<(String, Arc<EcSigningKey>)> {
        let now = crate::now();
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter(|k| k.meta.sign_from <= now && k.meta.retire_at.is_none_or(|r| r > now))
            .max_by_key(|k| k.meta.sign_from)
            .and_then(|k| k.private.clone().map(|p| (k.meta.kid.clone(), p)))
    }

    /// The public key for `kid` if it is published now.
    pub(crate) fn public_key(&self, kid: &str) -> Option<EcPublicKey> {
        let now = crate::now();
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.iter().find(|k| k.meta.kid == kid && k.meta.retire_at.is_none_or(|r| r > now)).map(|k| k.public.clone())
    }

    pub(crate) fn jwks(&self) -> Value {
        let now = crate::now();
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let list: Vec<Value> = keys
            .iter()
            .filter(|k| k.meta.retire_at.is_none_or(|r| r > now))
            .map(|k| {
                let mut j = k.public.to_jwk();
                j["kid"] = json!(k.meta.kid);
                j["alg"] = json!(ALG);
                j["use"] = json!("sig");
                j
            })
            .collect();
        json!({ "keys": list })
    }

    pub(crate) async fn rotate(&self, publish_ahead: Duration, overlap: Duration) -> Result<String, OAuthError> {
        self.reload().await.map_err(|_| OAuthError::unavailable())?;
        let now = crate::now();
        let ahead = time::Duration::try_from(publish_ahead).map_err(|_| OAuthError::server())?;
        let overlap = time::Duration::try_from(overlap).map_err(|_| OAuthError::server())?;
        let old: Vec<String> = {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            keys.iter().filter(|k| k.meta.retire_at.is_none()).map(|k| k.meta.kid.clone()).collect()
        };
        let kid = self.create_key(now + ahead).await?;
        for k in old {
            self.store.retire_signing_key(&k, now + ahead + overlap).await.map_err(|_| OAuthError::unavailable())?;
        }
        self.reload().await.map_err(|_| OAuthError::unavailable())?;
        Ok(kid)
    }
}
