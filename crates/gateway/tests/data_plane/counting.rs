//! A `Store` wrapper that counts calls, to prove which paths touch the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use gatehouse_store::*;
use gatehouse_types::{Id, Timestamp};

/// Wraps a store and counts calls: `credential_lookups` (find_credential), `lineage_reads`
/// (get_issued_token and get_credential: what resolving a derived token's lineage reads) and
/// `queries` (every other call except the background call-log / last_used_at writes).
pub struct CountingStore {
    pub inner: Arc<dyn Store>,
    pub credential_lookups: AtomicUsize,
    pub lineage_reads: AtomicUsize,
    pub queries: AtomicUsize,
}

impl CountingStore {
    fn count(&self, lookup: bool) {
        if lookup {
            self.credential_lookups.fetch_add(1, Ordering::SeqCst);
        }
        self.queries.fetch_add(1, Ordering::SeqCst);
    }
    pub fn total(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
    pub fn lookups(&self) -> usize {
        self.credential_lookups.load(Ordering::SeqCst)
    }
    pub fn lineage_reads(&self) -> usize {
        self.lineage_reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn migrate(&self) -> StoreResult<()> {
        self.count(false);
        self.inner.migrate().await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.count(false);
        self.inner.ping().await
    }
    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        self.count(false);
        self.inner.get_setting(key).await
    }
    async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        self.count(false);
        self.inner.set_setting(key, value).await
    }
    async fn create_team(&self, team: &Team) -> StoreResult<()> {
        self.count(false);
        self.inner.create_team(team).await
    }
    async fn get_team(&self, id: Id) -> StoreResult<Option<Team>> {
        self.count(false);
        self.inner.get_team(id).await
    }
    async fn get_team_by_name(&self, name: &str) -> StoreResult<Option<Team>> {
        self.count(false);
        self.inner.get_team_by_name(name).await
    }
    async fn list_teams(&self) -> StoreResult<Vec<Team>> {
        self.count(false);
        self.inner.list_teams().await
    }
    async fn create_app(&self, app: &App) -> StoreResult<()> {
        self.count(false);
        self.inner.create_app(app).await
    }
    async fn get_app(&self, id: Id) -> StoreResult<Option<App>> {
        self.count(false);
        self.inner.get_app(id).await
    }
    async fn list_apps(&self, team_id: Option<Id>) -> StoreResult<Vec<App>> {
        self.count(false);
        self.inner.list_apps(team_id).await
    }
    async fn delete_app(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        self.count(false);
        self.inner.delete_app(id, at).await
    }
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.count(false);
        self.inner.create_user(user).await
    }
    async fn get_user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        self.count(false);
        self.inner.get_user_by_username(username).await
    }
    // issue 7 (tenancy)
    async fn get_user(&self, id: Id) -> StoreResult<Option<User>> {
        self.count(false);
        self.inner.get_user(id).await
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.count(false);
        self.inner.list_users().await
    }
    async fn update_user(&self, user: &User) -> StoreResult<bool> {
        self.count(false);
        self.inner.update_user(user).await
    }
    async fn upsert_team_member(&self, member: &TeamMember) -> StoreResult<()> {
        self.count(false);
        self.inner.upsert_team_member(member).await
    }
    async fn remove_team_member(&self, team_id: Id, user_id: Id) -> StoreResult<bool> {
        self.count(false);
        self.inner.remove_team_member(team_id, user_id).await
    }
    async fn list_team_members(&self, team_id: Id) -> StoreResult<Vec<TeamMember>> {
        self.count(false);
        self.inner.list_team_members(team_id).await
    }
    async fn list_user_memberships(&self, user_id: Id) -> StoreResult<Vec<TeamMember>> {
        self.count(false);
        self.inner.list_user_memberships(user_id).await
    }
    async fn create_session(&self, session: &UserSession) -> StoreResult<()> {
        self.count(false);
        self.inner.create_session(session).await
    }
    async fn find_session(&self, digest: &[u8]) -> StoreResult<Option<UserSession>> {
        self.count(false);
        self.inner.find_session(digest).await
    }
    async fn revoke_session(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        self.count(false);
        self.inner.revoke_session(id, at).await
    }
    async fn set_session_password_version(&self, id: Id, version: &[u8]) -> StoreResult<bool> {
        self.count(false);
        self.inner.set_session_password_version(id, version).await
    }
    async fn revoke_user_sessions(&self, user_id: Id, keep: Option<Id>, at: Timestamp) -> StoreResult<u64> {
        self.count(false);
        self.inner.revoke_user_sessions(user_id, keep, at).await
    }
    async fn delete_expired_sessions(&self, before: Timestamp) -> StoreResult<u64> {
        self.count(false);
        self.inner.delete_expired_sessions(before).await
    }
    async fn create_operator_token(&self, token: &OperatorToken) -> StoreResult<()> {
        self.count(false);
        self.inner.create_operator_token(token).await
    }
    async fn find_operator_token(&self, digest: &[u8]) -> StoreResult<Option<OperatorToken>> {
        self.count(false);
        self.inner.find_operator_token(digest).await
    }
    async fn list_operator_tokens(&self) -> StoreResult<Vec<OperatorToken>> {
        self.count(false);
        self.inner.list_operator_tokens().await
    }
    async fn revoke_operator_token(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        self.count(false);
        self.inner.revoke_operator_token(id, at).await
    }
    async fn create_credential(&self, credential: &Credential) -> StoreResult<()> {
        self.count(false);
        self.inner.create_credential(credential).await
    }
    async fn get_credential(&self, id: Id) -> StoreResult<Option<Credential>> {
        self.lineage_reads.fetch_add(1, Ordering::SeqCst);
        self.count(false);
        self.inner.get_credential(id).await
    }
    async fn find_credential(&self, digest: &[u8]) -> StoreResult<Option<Credential>> {
        self.count(true);
        self.inner.find_credential(digest).await
    }
    async fn list_credentials(&self, filter: &CredentialFilter) -> StoreResult<Vec<Credential>> {
        self.count(false);
        self.inner.list_credentials(filter).await
    }
    async fn revoke_credential(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        self.count(false);
        self.inner.revoke_credential(id, at).await
    }
    async fn touch_credentials(&self, uses: &[(Id, Timestamp)]) -> StoreResult<()> {
        self.inner.touch_credentials(uses).await
    }
    async fn upsert_provider(&self, provider: &Provider) -> StoreResult<Provider> {
        self.count(false);
        self.inner.upsert_provider(provider).await
    }
    async fn get_provider(&self, id: Id) -> StoreResult<Option<Provider>> {
        self.count(false);
        self.inner.get_provider(id).await
    }
    async fn get_provider_by_name(&self, name: &str) -> StoreResult<Option<Provider>> {
        self.count(false);
        self.inner.get_provider_by_name(name).await
    }
    async fn list_providers(&self) -> StoreResult<Vec<Provider>> {
        self.count(false);
        self.inner.list_providers().await
    }
    async fn delete_provider(&self, id: Id) -> StoreResult<bool> {
        self.count(false);
        self.inner.delete_provider(id).await
    }
    async fn create_provider_credential(&self, credential: &ProviderCredential) -> StoreResult<()> {
        self.count(false);
        self.inner.create_provider_credential(credential).await
    }
    async fn list_provider_credentials(&self, provider_id: Id) -> StoreResult<Vec<ProviderCredential>> {
        self.count(false);
        self.inner.list_provider_credentials(provider_id).await
    }
    async fn revoke_provider_credential(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        self.count(false);
        self.inner.revoke_provider_credential(id, at).await
    }
    async fn upsert_model(&self, model: &Model) -> StoreResult<Model> {
        self.count(false);
        self.inner.upsert_model(model).await
    }
    async fn get_model(&self, name: &str) -> StoreResult<Option<Model>> {
        self.count(false);
        self.inner.get_model(name).await
    }
    async fn list_models(&self) -> StoreResult<Vec<Model>> {
        self.count(false);
        self.inner.list_models().await
    }
    async fn delete_model(&self, name: &str) -> StoreResult<bool> {
        self.count(false);
        self.inner.delete_model(name).await
    }
    async fn insert_call_logs(&self, logs: &[CallLog]) -> StoreResult<()> {
        self.inner.insert_call_logs(logs).await
    }
    async fn query_call_logs(&self, query: &CallLogQuery) -> StoreResult<Vec<CallLog>> {
        self.inner.query_call_logs(query).await
    }
    async fn call_usage(&self, month_start: Timestamp, day_start: Timestamp) -> StoreResult<Vec<gatehouse_store::CallUsage>> {
        self.inner.call_usage(month_start, day_start).await
    }
    async fn debug_dump(&self) -> StoreResult<String> {
        self.count(false);
        self.inner.debug_dump().await
    }
    // issue 5b: the audit log is written off the request path (like the call log): not counted.
    async fn append_audit_events(&self, events: &[gatehouse_store::NewAuditEvent]) -> StoreResult<Vec<gatehouse_store::AuditEvent>> {
        self.inner.append_audit_events(events).await
    }
    async fn query_audit_events(&self, query: &gatehouse_store::AuditQuery) -> StoreResult<Vec<gatehouse_store::AuditEvent>> {
        self.inner.query_audit_events(query).await
    }
    async fn audit_chain(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<gatehouse_store::AuditEvent>> {
        self.inner.audit_chain(after_seq, limit).await
    }
    async fn rotate_credential(&self, old: gatehouse_types::Id, successor: &Credential, old_expires_at: gatehouse_types::Timestamp) -> StoreResult<bool> {
        self.count(false);
        self.inner.rotate_credential(old, successor, old_expires_at).await
    }
    async fn suspend_credential(&self, id: gatehouse_types::Id, at: gatehouse_types::Timestamp) -> StoreResult<bool> {
        self.count(false);
        self.inner.suspend_credential(id, at).await
    }

    // --- issue 6: limits ---
    async fn upsert_limit(&self, limit: &Limit) -> StoreResult<Limit> {
        self.count(false);
        self.inner.upsert_limit(limit).await
    }
    async fn list_limits(&self) -> StoreResult<Vec<Limit>> {
        self.count(false);
        self.inner.list_limits().await
    }
    async fn delete_limit(&self, id: Id) -> StoreResult<bool> {
        self.count(false);
        self.inner.delete_limit(id).await
    }
    async fn set_model_cache(&self, model: &str, ttl_secs: u32, at: Timestamp) -> StoreResult<Option<ModelCachePolicy>> {
        self.count(false);
        self.inner.set_model_cache(model, ttl_secs, at).await
    }
    async fn list_model_caches(&self) -> StoreResult<Vec<ModelCachePolicy>> {
        self.count(false);
        self.inner.list_model_caches().await
    }
    async fn delete_model_cache(&self, model: &str) -> StoreResult<bool> {
        self.count(false);
        self.inner.delete_model_cache(model).await
    }

    // --- OAuth (issue 5) ---
    async fn create_oauth_client(&self, client: &OAuthClient) -> StoreResult<()> {
        self.inner.create_oauth_client(client).await
    }
    async fn get_oauth_client(&self, id: Id) -> StoreResult<Option<OAuthClient>> {
        self.inner.get_oauth_client(id).await
    }
    async fn list_oauth_clients(&self, include_revoked: bool) -> StoreResult<Vec<OAuthClient>> {
        self.inner.list_oauth_clients(include_revoked).await
    }
    async fn revoke_oauth_client(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        self.inner.revoke_oauth_client(id, at).await
    }
    async fn revoke_app_tokens(&self, app_id: Id, at: Timestamp) -> StoreResult<Vec<Id>> {
        self.count(false);
        self.inner.revoke_app_tokens(app_id, at).await
    }
    async fn create_issued_token(&self, token: &IssuedToken) -> StoreResult<()> {
        self.inner.create_issued_token(token).await
    }
    async fn get_issued_token(&self, id: Id) -> StoreResult<Option<IssuedToken>> {
        self.lineage_reads.fetch_add(1, Ordering::SeqCst);
        self.count(false);
        self.inner.get_issued_token(id).await
    }
    async fn find_issued_token(&self, digest: &[u8]) -> StoreResult<Option<IssuedToken>> {
        self.count(false);
        self.inner.find_issued_token(digest).await
    }
    async fn revoke_issued_token(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        self.inner.revoke_issued_token(id, at).await
    }
    async fn list_revoked_ids(&self, since: Timestamp) -> StoreResult<Vec<Id>> {
        self.inner.list_revoked_ids(since).await
    }
    async fn consume_single_use(&self, digest: &[u8]) -> StoreResult<Option<IssuedToken>> {
        self.inner.consume_single_use(digest).await
    }
    async fn create_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
        self.inner.create_signing_key(key).await
    }
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        self.inner.list_signing_keys().await
    }
    async fn retire_signing_key(&self, kid: &str, at: Timestamp) -> StoreResult<bool> {
        self.inner.retire_signing_key(kid, at).await
    }
    async fn record_jti(&self, key: &[u8], expires_at: Timestamp) -> StoreResult<bool> {
        self.inner.record_jti(key, expires_at).await
    }
    async fn create_service(&self, service: &Service) -> StoreResult<()> {
        self.inner.create_service(service).await
    }
    async fn get_service(&self, id: Id) -> StoreResult<Option<Service>> {
        self.inner.get_service(id).await
    }
    async fn get_service_by_slug(&self, slug: &str) -> StoreResult<Option<Service>> {
        self.inner.get_service_by_slug(slug).await
    }
    async fn list_services(&self, team_id: Option<Id>) -> StoreResult<Vec<Service>> {
        self.count(false);
        self.inner.list_services(team_id).await
    }
    async fn update_service(&self, service: &Service, release: Option<&ServiceRelease>) -> StoreResult<bool> {
        self.inner.update_service(service, release).await
    }
    async fn list_service_releases(&self, service_id: Id) -> StoreResult<Vec<ServiceRelease>> {
        self.inner.list_service_releases(service_id).await
    }
    async fn get_service_release(&self, service_id: Id, version: u32) -> StoreResult<Option<ServiceRelease>> {
        self.inner.get_service_release(service_id, version).await
    }
    async fn create_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        self.inner.create_subscription(subscription).await
    }
    async fn get_subscription(&self, id: Id) -> StoreResult<Option<Subscription>> {
        self.inner.get_subscription(id).await
    }
    async fn list_subscriptions(&self, filter: &SubscriptionFilter) -> StoreResult<Vec<Subscription>> {
        self.count(false);
        self.inner.list_subscriptions(filter).await
    }
    async fn update_subscription(&self, subscription: &Subscription, expected: SubscriptionStatus) -> StoreResult<bool> {
        self.inner.update_subscription(subscription, expected).await
    }
    async fn apply_config(&self, changes: &gatehouse_store::ConfigChanges) -> StoreResult<()> {
        self.inner.apply_config(changes).await
    }
}
