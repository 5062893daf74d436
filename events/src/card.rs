//! Card references that events carry: never the number, only what links orders paid with
//! the same card; and the Luhn check every card number must pass.

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

/// Whether a string of ASCII digits passes the Luhn check (false if any byte is no digit).
///
/// ```
/// assert!(events::luhn_valid("4242424242424242"));
/// assert!(!events::luhn_valid("4242424242424241"));
/// ```
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return false;
        }
        let d = u32::from(b - b'0');
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 { x - 9 } else { x }
        } else {
            d
        };
    }
    sum.is_multiple_of(10)
}
