//! Users and password checks. Hashes are argon2 (PHC strings); verifying one costs tens of
//! milliseconds of CPU, so it runs on the blocking pool, never on the reactor.

use crate::error::{CoreError, CoreResult};
use crate::persist::UserRecord;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::net::IpAddr;

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with default parameters cannot fail")
        .to_string()
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Checks that a PHC string is an argon2 hash this broker can verify.
pub fn validate_hash(hash: &str) -> CoreResult<()> {
    let parsed = PasswordHash::new(hash).map_err(|e| CoreError::invalid(format!("bad password hash: {e}")))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(CoreError::invalid("password hashes must be argon2"));
    }
    Ok(())
}

/// Decides whether a user may log in from `peer`: users listed as loopback-only (by default
/// `guest`, as in RabbitMQ) are refused from any other address.
pub fn peer_allowed(user: &str, peer: IpAddr, loopback_users: &[String]) -> bool {
    peer.is_loopback() || !loopback_users.iter().any(|u| u == user)
}

/// A logged-in user as adapters see it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub tags: Vec<String>,
}

impl From<&UserRecord> for User {
    fn from(r: &UserRecord) -> Self {
        User { name: r.name.clone(), tags: r.tags.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_loopback_rule_applies() {
        let h = hash_password("s3cret");
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "nope"));
        assert!(!verify_password("not a hash", "x"));
        validate_hash(&h).unwrap();
        assert!(validate_hash("$pbkdf2$x").is_err());
        let guest = vec!["guest".to_string()];
        assert!(peer_allowed("guest", "127.0.0.1".parse().unwrap(), &guest));
        assert!(!peer_allowed("guest", "10.0.0.2".parse().unwrap(), &guest));
        assert!(peer_allowed("alice", "10.0.0.2".parse().unwrap(), &guest));
    }
}
