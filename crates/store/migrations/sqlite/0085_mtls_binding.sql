-- Issue 5 (T30): certificate-bound access tokens (RFC 8705 §3). Each binding is the
-- base64url SHA-256 thumbprint of the client certificate's DER (`cnf.x5t#S256`).
-- oauth_clients.tls_bound: 1 = the client's tokens are bound to the certificate of the TLS
-- connection it calls the token endpoint over (client metadata
-- `tls_client_certificate_bound_access_tokens`, RFC 8705 §3.4).
-- issued_tokens.binding_x5t: the certificate a token is bound to.
-- credentials.mtls_x5t: the certificate an API key is bound to.
ALTER TABLE oauth_clients ADD COLUMN tls_bound INTEGER NOT NULL DEFAULT 0;
ALTER TABLE issued_tokens ADD COLUMN binding_x5t TEXT;
ALTER TABLE credentials ADD COLUMN mtls_x5t TEXT;
