//! Card references that events carry: never the number, only what links orders paid with
//! the same card.

use sha2::{Digest, Sha256};

/// A stable, non-reversible fingerprint of a card number's digits (`fp_` + 16 hex digits).
/// Payments compute it at checkout; the simulator computes it for its ground-truth labels.
///
/// ```
/// assert_eq!(events::card_fingerprint("4242424242424242").len(), 19);
/// ```
pub fn card_fingerprint(digits: &str) -> String {
    let h = Sha256::digest(format!("shopstream-card:{digits}"));
    format!(
        "fp_{}",
        h[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}
