//! Lineage of derived tokens (issue 5 H4–H6): the chain of tokens a token was exchanged from
//! (RFC 8693 §2, `parent_id` / JWT `parent`) up to its root credential, resolved once and cached.
//!
//! A derived token never escapes its root: the root API key's status (revoked, suspended,
//! expired), its IP allow-list and its limits hold for every generation, and the token and
//! spend caps of every ancestor form one shared budget.
//!
//! Cache: [`LINEAGE_TTL`], keyed by the id the walk starts at (a token's parent). Every
//! [`gatehouse_store::BusEvent`] that revokes or suspends something (`TokenRevoked`,
//! `CredentialChanged`, `Resync`) drops every entry synchronously in
//! [`crate::OAuth::on_bus_event`], and a generation counter keeps a walk that raced such an
//! event from inserting what it read. On every use the cached chain is checked again against
//! the deny-list and the root key's expiry (cheap, no store access).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gatehouse_auth::cidr::{self, Cidr};
use gatehouse_store::{IssuedToken, StoreError};
use gatehouse_types::{Id, Timestamp};

use crate::tokens::MAX_ACT_DEPTH;
use crate::{OAuth, now};

/// How long a resolved lineage is reused without the bus (the key cache's positive TTL).
pub const LINEAGE_TTL: Duration = Duration::from_secs(30);

/// One token of a lineage (an ancestor of the token presented, or the subject of an exchange).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ancestor {
    /// The token's `jti`.
    pub id: Id,
    /// The OAuth client that obtained it (revoking the client kills it).
    pub client_id: Option<Id>,
    /// Its token cap (total input + output tokens), if any.
    pub max_tokens: Option<i64>,
    /// Its spend cap in USD micros, if any.
    pub max_spend_micros: Option<i64>,
}

/// The API key a lineage starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKey {
    /// The key's id: key-scope limits of derived tokens are this key's (H5).
    pub id: Id,
    /// The key's IP allow-list (CIDRs; empty = any address), enforced for derived tokens (H4).
    pub ip_allow: Vec<String>,
    /// The key's expiry, checked on every use.
    pub expires_at: Option<Timestamp>,
}

/// The tokens above a token (nearest first) and the API key at the root, if the chain starts
/// at one (a client-credentials token has no root key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    pub ancestors: Vec<Ancestor>,
    pub root_key: Option<RootKey>,
}

impl Lineage {
    /// `(jti, cap)` of every ancestor with a token cap.
    pub fn token_caps(&self) -> impl Iterator<Item = (Id, i64)> + '_ {
        self.ancestors.iter().filter_map(|a| a.max_tokens.map(|m| (a.id, m)))
    }

    /// `(jti, cap in USD micros)` of every ancestor with a spend cap.
    pub fn spend_caps(&self) -> impl Iterator<Item = (Id, i64)> + '_ {
        self.ancestors.iter().filter_map(|a| a.max_spend_micros.map(|m| (a.id, m)))
    }

    /// The root key's allow-list (empty without a root key).
    pub fn ip_allow(&self) -> &[String] {
        self.root_key.as_ref().map_or(&[], |k| k.ip_allow.as_slice())
    }

    /// Whether a client at `ip` (as [`cidr::client_ip`] determined it: socket peer, or
    /// `X-Forwarded-For` behind a trusted proxy) may use a token of this lineage: true when the
    /// root key has no allow-list, false for an unknown address when it has one.
    pub fn ip_allowed(&self, ip: Option<IpAddr>) -> bool {
        let list = self.ip_allow();
        if list.is_empty() {
            return true;
        }
        let allowed: Vec<Cidr> = list.iter().filter_map(|c| Cidr::parse(c).ok()).collect();
        ip.is_some_and(|ip| cidr::any_contains(&allowed, ip))
    }

    /// This lineage with `t` in front (the lineage of a token whose parent's lineage is `self`).
    pub(crate) fn with_token(&self, t: &IssuedToken) -> Lineage {
        let mut ancestors = Vec::with_capacity(self.ancestors.len() + 1);
        ancestors.push(Ancestor::of(t));
        ancestors.extend(self.ancestors.iter().cloned());
        Lineage { ancestors, root_key: self.root_key.clone() }
    }
}

impl Ancestor {
    fn of(t: &IssuedToken) -> Self {
        Self { id: t.id, client_id: t.client_id, max_tokens: t.max_tokens, max_spend_micros: t.max_spend_micros }
    }
}

impl OAuth {
    /// The lineage of a token whose parent is `parent` (`None`: an empty lineage, no store
    /// access). `Ok(None)` when any ancestor is revoked, deny-listed or unknown, or the root key
    /// is revoked, suspended or expired (H2/H3). Cached (module doc).
    pub(crate) async fn lineage(&self, parent: Option<Id>) -> Result<Option<Arc<Lineage>>, StoreError> {
        let Some(start) = parent else { return Ok(Some(Arc::new(Lineage::default()))) };
        if let Some(l) = self.lineage.get(&start) {
            return Ok(self.live(&l).then_some(l));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let mut out = Lineage::default();
        let mut cur = start;
        let mut complete = false;
        for _ in 0..(MAX_ACT_DEPTH + 2) {
            if self.deny.contains_key(&cur) {
                return Ok(None);
            }
            if let Some(p) = self.deps.store.get_issued_token(cur).await? {
                if p.revoked_at.is_some() || self.denied(&p) {
                    return Ok(None);
                }
                out.ancestors.push(Ancestor::of(&p));
                match p.parent_id {
                    Some(n) => cur = n,
                    None => {
                        complete = true;
                        break;
                    }
                }
            } else if let Some(c) = self.deps.store.get_credential(cur).await? {
                if c.revoked_at.is_some() || c.security.suspended_at.is_some() {
                    return Ok(None);
                }
                out.root_key = Some(RootKey { id: c.id, ip_allow: c.security.ip_allow.clone(), expires_at: c.expires_at });
                complete = true;
                break;
            } else {
                return Ok(None);
            }
        }
        if !complete {
            // Deeper than any exchange can make it.
            return Ok(None);
        }
        let l = Arc::new(out);
        // An invalidation that ran during the walk may concern it: do not cache.
        if self.generation.load(Ordering::SeqCst) == generation {
            self.lineage.insert(start, l.clone());
        }
        Ok(self.live(&l).then_some(l))
    }

    /// The per-use check of a (possibly cached) lineage: no member on the deny-list, root key
    /// not expired.
    fn live(&self, l: &Lineage) -> bool {
        let at = now();
        l.ancestors.iter().all(|a| !self.deny.contains_key(&a.id) && a.client_id.is_none_or(|c| !self.deny.contains_key(&c)))
            && l.root_key.as_ref().is_none_or(|k| !self.deny.contains_key(&k.id) && k.expires_at.is_none_or(|e| e > at))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn root(list: &[&str]) -> Lineage {
        Lineage {
            ancestors: vec![],
            root_key: Some(RootKey { id: Id::nil(), ip_allow: list.iter().map(|s| s.to_string()).collect(), expires_at: None }),
        }
    }

    #[test]
    fn ip_allowed_follows_the_root_keys_allow_list() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(Lineage::default().ip_allowed(None));
        assert!(root(&[]).ip_allowed(ip("198.51.100.1")));
        let l = root(&["10.0.0.0/8", "2001:db8::/32"]);
        assert!(l.ip_allowed(ip("10.1.2.3")));
        assert!(l.ip_allowed(ip("2001:db8::1")));
        assert!(!l.ip_allowed(ip("127.0.0.1")));
        assert!(!l.ip_allowed(None));
    }
}
