//! ICE server list for `welcome`, with TURN REST credentials (coturn `use-auth-secret`).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use swarmdrop::signal::IceServer;

/// The TURN REST credential for `username`: base64(HMAC-SHA1(secret, username)).
pub(crate) fn credential(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// STUN URLs as they are; TURN URLs with a username `expiry:peer` and its credential when a
/// secret is set (without one, TURN URLs are passed on bare, for servers with other auth).
pub(crate) fn ice_servers(
    urls: &[String],
    secret: Option<&str>,
    ttl: u64,
    peer: &str,
    now_unix: u64,
) -> Vec<IceServer> {
    let (turn, stun): (Vec<&String>, Vec<&String>) =
        urls.iter().partition(|u| u.starts_with("turn"));
    let mut out = Vec::new();
    if !stun.is_empty() {
        out.push(IceServer {
            urls: stun.into_iter().cloned().collect(),
            username: None,
            credential: None,
        });
    }
    if !turn.is_empty() {
        let (username, credential) = match secret {
            Some(secret) => {
                let user = format!("{}:{peer}", now_unix.saturating_add(ttl));
                let cred = credential(secret, &user);
                (Some(user), Some(cred))
            }
            None => (None, None),
        };
        out.push(IceServer {
            urls: turn.into_iter().cloned().collect(),
            username,
            credential,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coturn_rest_credential() {
        // HMAC-SHA1("secret", "1700000000:peer") computed independently (python hmac module).
        assert_eq!(
            credential("secret", "1700000000:peer"),
            "m9GnlZWvaZKjLjGseKws6UpgiA0="
        );
    }

    #[test]
    fn stun_and_turn_split() {
        let urls = vec![
            "stun:127.0.0.1:3478".to_string(),
            "turn:127.0.0.1:3478?transport=udp".to_string(),
        ];
        let s = ice_servers(&urls, Some("k"), 60, "p1", 1000);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].urls, vec!["stun:127.0.0.1:3478"]);
        assert_eq!(s[0].username, None);
        assert_eq!(s[1].username.as_deref(), Some("1060:p1"));
        assert_eq!(
            s[1].credential.as_deref(),
            Some(credential("k", "1060:p1").as_str())
        );
        assert!(ice_servers(&[], Some("k"), 60, "p", 0).is_empty());
        let bare = ice_servers(&urls[1..], None, 60, "p", 0);
        assert_eq!(bare[0].credential, None);
    }
}
