//! Change events between the control plane and the data plane (revocations, config changes).
//!
//! Single node: [`MemoryBus`] calls every handler synchronously inside `publish`, so a revocation
//! is in effect before the admin API answers. Multi-node (later): a Redis pub/sub backend with
//! the same trait; on resubscribe handlers receive [`BusEvent::Resync`].

use std::sync::{Arc, RwLock};

use gatehouse_types::Id;

/// An event on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A credential (API key) was revoked, rotated or changed: drop it from every cache.
    CredentialChanged { id: Id, digest: Vec<u8> },
    /// Providers, provider credentials or models changed: reload routing.
    RoutingChanged,
    /// Events may have been missed: flush every cache.
    Resync,
    /// Rate limits, quotas or budgets changed (issue 6): reload the limits table.
    LimitsChanged,
    /// An issued token, or an API key / OAuth client whose derived tokens must stop working,
    /// was revoked (issue 5): its id joins every node's deny-list until the longest token
    /// lifetime has passed, and cached tokens with that id, parent or client are dropped.
    TokenRevoked { id: Id },
    /// Issue 7: a service, its release or a subscription changed (the data plane reloads its
    /// admission table before the next request).
    ServicesChanged,
}

/// A handler for bus events. Must be quick and must not block.
pub type BusHandler = Arc<dyn Fn(&BusEvent) + Send + Sync>;

/// Publish/subscribe of [`BusEvent`]s.
pub trait Bus: Send + Sync + 'static {
    fn publish(&self, event: BusEvent);
    fn subscribe(&self, handler: BusHandler);
}

/// In-process bus: handlers run inside `publish`, in subscription order.
#[derive(Default)]
pub struct MemoryBus {
    handlers: RwLock<Vec<BusHandler>>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Bus for MemoryBus {
    fn publish(&self, event: BusEvent) {
        let handlers = match self.handlers.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for h in handlers {
            h(&event);
        }
    }

    fn subscribe(&self, handler: BusHandler) {
        match self.handlers.write() {
            Ok(mut h) => h.push(handler),
            Err(poisoned) => poisoned.into_inner().push(handler),
        }
    }
}
