//! Access tokens (JWT, HS256, 15 minutes) and refresh tokens (opaque, 7 days, stored only as
//! a SHA-256 hash, rotated on every use).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use events::domain::users::Role;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const ISSUER: &str = "shopstream";

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    /// Session (refresh-token family) the token belongs to.
    pub sid: Uuid,
    pub roles: Vec<Role>,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

/// Signing keys and lifetimes.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// What an access token must satisfy, built once (it holds sets of claim names).
    validation: Validation,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration) -> Self {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation: {
                let mut v = Validation::new(Algorithm::HS256);
                v.set_issuer(&[ISSUER]);
                v.leeway = 0;
                v
            },
            access_ttl,
            refresh_ttl,
        }
    }

    pub fn issue_access(&self, user: Uuid, session: Uuid, roles: &[Role]) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            sid: session,
            roles: roles.to_vec(),
            iat: now,
            exp: now + self.access_ttl.as_secs() as i64,
            iss: ISSUER.into(),
        };
        // HS256 over serialisable claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    pub fn verify_access(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// A new opaque refresh token: 256 random bits, URL-safe.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database stores instead of the token.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_verify_and_reject_forgery_and_expiry() {
        let keys = TokenKeys::new(
            b"secret-a",
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let t = keys.issue_access(Uuid::nil(), Uuid::nil(), &[Role::Customer]);
        assert_eq!(keys.verify_access(&t).unwrap().roles, vec![Role::Customer]);
        let other = TokenKeys::new(
            b"secret-b",
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        assert_eq!(other.verify_access(&t), Err(TokenError::Invalid));
        let mut tampered = t.clone();
        tampered.insert(t.len() / 2, 'x');
        assert_eq!(keys.verify_access(&tampered), Err(TokenError::Invalid));
        let expired = TokenKeys::new(b"secret-a", Duration::ZERO, Duration::ZERO);
        let t = expired.issue_access(Uuid::nil(), Uuid::nil(), &[]);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(keys.verify_access(&t), Err(TokenError::Expired));
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        assert_ne!(a, new_refresh_token());
        assert_eq!(hash_refresh_token(&a).len(), 32);
        assert_ne!(hash_refresh_token(&a), a.as_bytes());
    }
}
