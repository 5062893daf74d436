//! Card input: checked with Luhn, reduced at once to what may be kept (fingerprint, BIN,
//! last four). The number itself goes no further than the gateway call.

/// A card number that passed the Luhn check.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardNumber(****{})", self.last4())
    }
}

impl CardNumber {
    pub fn parse(raw: &str) -> Result<CardNumber, &'static str> {
        let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be 12 to 19 digits");
        }
        if !events::luhn_valid(&digits) {
            return Err("fails the Luhn check");
        }
        Ok(CardNumber(digits))
    }

    pub fn digits(&self) -> &str {
        &self.0
    }

    pub fn bin(&self) -> String {
        self.0[..6].to_owned()
    }

    pub fn last4(&self) -> String {
        self.0[self.0.len() - 4..].to_owned()
    }

    /// Stable per card, not reversible: links orders paid with the same card.
    pub fn fingerprint(&self) -> String {
        events::card_fingerprint(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_derived_values() {
        let c = CardNumber::parse("4242 4242 4242 4242").unwrap();
        assert_eq!(c.bin(), "424242");
        assert_eq!(c.last4(), "4242");
        assert_eq!(
            c.fingerprint(),
            CardNumber::parse("4242424242424242").unwrap().fingerprint()
        );
        assert!(!format!("{c:?}").contains("42424242"));
        assert!(CardNumber::parse("4242424242424241").is_err());
        assert!(CardNumber::parse("4242").is_err());
        assert!(CardNumber::parse("4242x24242424242").is_err());
    }
}
